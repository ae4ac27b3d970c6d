<?php
header('Content-Type: application/json');
echo json_encode(['script' => 'sub/index.php', 'server' => [
    'SCRIPT_NAME' => $_SERVER['SCRIPT_NAME'] ?? null,
    'SCRIPT_FILENAME' => $_SERVER['SCRIPT_FILENAME'] ?? null,
    'REQUEST_URI' => $_SERVER['REQUEST_URI'] ?? null,
]], JSON_UNESCAPED_SLASHES);
