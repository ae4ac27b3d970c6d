<?php
// A worker script that leaks on purpose: every request adds ?kb= KiB (default 1024) to a
// static array that lives as long as the worker, as a cache that is never cleared would.
$leak = [];
$served = 0;
while (askr_handle_request(function () use (&$leak, &$served) {
    $kb = (int)($_GET['kb'] ?? 1024);
    $leak[] = str_repeat(chr(65 + $served % 26), $kb * 1024);  // written, so its pages are resident
    $served++;
    header('Content-Type: application/json');
    echo json_encode(['pid' => getmypid(), 'served' => $served, 'held_kib' => count($leak) * $kb]);
})) {
}
