<?php
// A queue worker or scheduler run (tests/integration/test_sandboxing.py): what it could read,
// written where the test looks ($argv[1] is not used: askr passes queue:work arguments).
$base = getenv('ASKR_APP_BASE');
$name = getenv('ASKR_QUEUE_WORKER') !== false ? 'queue' : 'scheduler';
$result = [
    'shadow' => @file_get_contents('/etc/shadow') !== false,
    'code' => @file_get_contents($base . '/public/probe.php') !== false,
    'write_code' => @file_put_contents($base . '/public/' . $name . '.php', '<?php') !== false,
    'own_proc' => @file_get_contents('/proc/self/status') !== false,
];
file_put_contents($base . '/storage/' . $name . '.json', json_encode($result));
if ($name === 'queue') {
    sleep(60);  // a queue worker waits for jobs; askr stops it at shutdown
}
