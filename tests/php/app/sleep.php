<?php
// Sleeps ?ms= milliseconds, then reports the worker pid.
usleep((int)($_GET['ms'] ?? 0) * 1000);
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'slept_ms' => (int)($_GET['ms'] ?? 0)]);
