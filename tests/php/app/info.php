<?php
// Everything a request looks like from inside PHP.
header('Content-Type: application/json');
$status = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo json_encode([
    'script' => 'info.php',
    'sapi' => PHP_SAPI,
    'php_sapi_name' => php_sapi_name(),
    'pid' => getmypid(),
    'server' => $_SERVER,
    'get' => $_GET,
    'post' => $_POST,
    'cookie' => $_COOKIE,
    'request' => $_REQUEST,
    'files' => $_FILES,
    'input' => file_get_contents('php://input'),
    'opcache_enabled' => is_array($status) ? $status['opcache_enabled'] : false,
    'getenv_http_proxy' => getenv('HTTP_PROXY'),
], JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
