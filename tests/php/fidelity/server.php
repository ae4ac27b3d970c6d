<?php
// The CGI variables apps build URLs and paths from.
header('Content-Type: application/json');
$keys = ['SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO', 'PATH_TRANSLATED', 'PHP_SELF',
         'DOCUMENT_URI', 'REQUEST_URI', 'QUERY_STRING', 'ORIG_PATH_INFO', 'ORIG_SCRIPT_NAME',
         'ORIG_SCRIPT_FILENAME', 'ORIG_PATH_TRANSLATED', 'SERVER_PROTOCOL', 'REQUEST_METHOD'];
$out = [];
foreach ($keys as $k) {
    $out[$k] = $_SERVER[$k] ?? null;
}
$out['getenv_PATH_TRANSLATED'] = getenv('PATH_TRANSLATED');
echo json_encode($out);
