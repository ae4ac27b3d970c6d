<?php
// php-src ext/session/tests/rfc1867_sid_invalid.phpt over HTTP: the warnings PHP prints while it
// parses the upload at request startup (an illegal session id in the cookie), then the request.
error_reporting(0);
session_start();
var_dump(session_id());
var_dump(basename(__FILE__) == $_POST[ini_get("session.upload_progress.name")]);
var_dump(count($_FILES), $_FILES['file1']['size'] ?? null, $_FILES['file2']['size'] ?? null);
var_dump($_SESSION["upload_progress_" . basename(__FILE__)] ?? null);
session_destroy();
