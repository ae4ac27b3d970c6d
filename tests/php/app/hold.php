<?php
// Occupies a worker until a test releases it: writes its pid to ?dir=/<pid>, then waits
// (at most ?max= seconds, default 30) for the file ?gate= to exist.
$dir = $_GET['dir'] ?? sys_get_temp_dir();
$gate = $_GET['gate'] ?? '';
$max = (float)($_GET['max'] ?? 30);
file_put_contents("$dir/" . getmypid(), (string)getmypid());
$deadline = microtime(true) + $max;
while (!file_exists($gate) && microtime(true) < $deadline) {
    usleep(5000);
}
header('Content-Type: application/json');
echo json_encode(['pid' => getmypid(), 'released' => file_exists($gate)]);
