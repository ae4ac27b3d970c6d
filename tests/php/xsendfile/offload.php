<?php
// Answers with a header naming a file for the front to send, and a body of its own that the
// front must discard: ?header=X-Sendfile (or X-Accel-Redirect) &target=PATH-OR-URI, optionally
// &status=CODE, &type=CONTENT-TYPE, and &junk=N to go on writing N MiB of body after the head.
if (isset($_GET['status'])) {
    http_response_code((int)$_GET['status']);
}
if (isset($_GET['type'])) {
    header('Content-Type: ' . $_GET['type']);
}
header('Content-Disposition: attachment; filename="report.pdf"');
header('Cache-Control: private, max-age=60');
header('X-Php-Pid: ' . getmypid());
header(($_GET['header'] ?? 'X-Sendfile') . ': ' . $_GET['target']);
echo "PHP BODY, TO BE DISCARDED\n";
$chunk = str_repeat('j', 1 << 20);
for ($i = 0; $i < (int)($_GET['junk'] ?? 0); $i++) {
    echo $chunk;
    flush();
}
