<?php
// Worker-mode fixture for the readiness tests (tests/integration/test_health_drain.py).
// Boot waits until the file named by ASKR_TEST_BOOT_GATE exists, so a test holds workers in
// "booting" for as long as it wants; ?do=quit answers, then ends this worker (it is replaced).
$gate = getenv('ASKR_TEST_BOOT_GATE');
$deadline = microtime(true) + 120;
while ($gate && !file_exists($gate) && microtime(true) < $deadline) {
    usleep(20000);
}
$quit = false;
$handler = function () use (&$quit): void {
    $quit = ($_GET['do'] ?? '') === 'quit';
    echo 'from php';
};
while (askr_handle_request($handler) && !$quit) {
}
