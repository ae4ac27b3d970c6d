<?php
// ?kb= blocks of 1024 bytes, each starting with its 6-digit index (order and loss are visible).
header('Content-Type: application/octet-stream');
$kb = (int)($_GET['kb'] ?? 1024);
$filler = str_repeat('abcdefghijklmnop', 64);
for ($i = 0; $i < $kb; $i++) {
    echo sprintf('%06d', $i), substr($filler, 6);
}
