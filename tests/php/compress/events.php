<?php
// Server-sent events, flushed one at a time: event i (i > 1) is made only once the file
// ?gate=PATH-<i> exists (at most 30 s), so a test proves event i-1 arrived, compressed and
// decodable, before event i was written.
while (ob_get_level() > 0) {
    ob_end_flush();
}
header('Content-Type: text/event-stream');
header('Cache-Control: no-cache');
$n = (int)($_GET['n'] ?? 3);
$gate = $_GET['gate'] ?? '';
for ($i = 1; $i <= $n; $i++) {
    if ($i > 1) {
        $deadline = microtime(true) + 30;
        while (!file_exists("$gate-$i") && microtime(true) < $deadline) {
            usleep(5000);
        }
    }
    echo "data: event-$i " . str_repeat('padding ', 60) . "\n\n";
    flush();
}
