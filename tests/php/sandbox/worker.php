<?php
// Worker mode for the sandbox tests: every request runs public/probe.php.
while (askr_handle_request(function () { require __DIR__ . '/public/probe.php'; })) {
}
