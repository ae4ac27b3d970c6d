<?php
// Emits ?n= chunks (default 3), flushing after each.
// Between chunks it either sleeps ?ms= (default 300) or, with ?gate=PATH, waits (at most 30 s)
// for the file PATH-<i> to exist, so a test can prove chunk i-1 arrived before chunk i was made.
while (ob_get_level() > 0) {
    ob_end_flush();
}
header('Content-Type: text/plain');
header('X-Worker-Pid: ' . getmypid());
$n = (int)($_GET['n'] ?? 3);
$ms = (int)($_GET['ms'] ?? 300);
$gate = $_GET['gate'] ?? null;
for ($i = 1; $i <= $n; $i++) {
    if ($i > 1) {
        if ($gate !== null) {
            $deadline = microtime(true) + 30;
            while (!file_exists("$gate-$i") && microtime(true) < $deadline) {
                usleep(5000);
            }
        } else {
            usleep($ms * 1000);
        }
    }
    echo "chunk-$i\n";
    flush();
}
