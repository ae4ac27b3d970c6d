<?php
// Holds a string of ?mb= MiB (PHP's peak memory grows by that much), and spends ?cpu_ms=
// milliseconds of CPU, then reports the worker pid.
$s = str_repeat('x', (int)($_GET['mb'] ?? 8) << 20);
$until = microtime(true) + (int)($_GET['cpu_ms'] ?? 0) / 1000;
$n = 0;
while (microtime(true) < $until) {
    $n++;
}
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'bytes' => strlen($s)]);
