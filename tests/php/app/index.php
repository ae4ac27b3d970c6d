<?php
// Front controller: reports which script ran and the routing-related CGI variables.
header('Content-Type: application/json');
$keys = ['SCRIPT_FILENAME', 'SCRIPT_NAME', 'PHP_SELF', 'PATH_INFO', 'REQUEST_URI', 'DOCUMENT_URI',
         'DOCUMENT_ROOT', 'QUERY_STRING', 'REQUEST_METHOD'];
$server = [];
foreach ($keys as $k) {
    $server[$k] = $_SERVER[$k] ?? null;
}
echo json_encode(['script' => 'index.php', 'server' => $server, 'get' => $_GET], JSON_UNESCAPED_SLASHES);
