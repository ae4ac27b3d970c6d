<?php
// header(), http_response_code() and several setcookie() calls.
if (isset($_GET['redirect'])) {
    header('Location: /elsewhere?from=headers');
    exit;
}
http_response_code(201);
header('X-Askr-Test: one');
header('X-Multi: a');
header('X-Multi: b', false);
header('X-Replaced: old');
header('X-Replaced: new');
setcookie('first', 'alpha');
setcookie('second', 'beta', ['path' => '/', 'httponly' => true]);
setcookie('third', 'gamma value', ['samesite' => 'Lax']);
header('Content-Type: text/plain; charset=utf-8');
echo "headers-ok";
