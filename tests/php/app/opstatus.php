<?php
// Which scripts are in OPcache's shared memory, as seen from this worker.
header('Content-Type: application/json');
$status = opcache_get_status(true);
echo json_encode(['pid' => getmypid(), 'scripts' => array_keys($status['scripts'] ?? [])]);
