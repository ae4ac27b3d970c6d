<?php
// A worker-mode test app: boots once, then answers each request according to ?do=.
// Environment knobs (tests set them on the server): ASKR_TEST_BOOT_FAIL throws during boot,
// ASKR_TEST_RETURN_AFTER=N returns from the loop after N requests, ASKR_TEST_FRANKENPHP uses
// the FrankenPHP function name.
$boot = bin2hex(random_bytes(8));
$served = 0;
if (getenv('ASKR_TEST_BOOT_FAIL')) {
    throw new RuntimeException('boot failed on purpose');
}
$returnAfter = (int)(getenv('ASKR_TEST_RETURN_AFTER') ?: 0);

$handler = function () use ($boot, &$served): void {
    $served++;
    $do = $_GET['do'] ?? '';
    if ($do === 'throw') {
        throw new RuntimeException('handler failed on purpose');
    }
    if ($do === 'fatal') {
        ini_set('memory_limit', '16M');
        $x = str_repeat('x', 64 << 20);
    }
    if ($do === 'exit') {
        echo 'exited';
        exit;
    }
    if ($do === 'hints') {
        header('Link: </style.css>; rel=preload; as=style');
        headers_send(103);
        echo 'final';
        return;
    }
    if ($do === 'finish') {
        echo 'finished early';
        fastcgi_finish_request();
        $gate = $_GET['gate'];
        $deadline = microtime(true) + 30;
        while (!file_exists($gate) && microtime(true) < $deadline) {
            usleep(5000);
        }
        file_put_contents($gate . '.after', 'ran on');
        return;
    }
    if ($do === 'raise') {
        ini_set('memory_limit', '512M');
        ini_set('max_execution_time', '0');
        ini_set('default_charset', 'ISO-8859-1');
    }
    if ($do === 'session') {
        session_save_path(sys_get_temp_dir());
        session_start();
        if (isset($_GET['put'])) {
            $_SESSION['owner'] = $_GET['put'];
        }
    }
    header('Content-Type: application/json');
    echo json_encode([
        'boot' => $boot,
        'served' => $served,
        'pid' => getmypid(),
        'get' => $_GET,
        'post' => $_POST,
        'cookie' => $_COOKIE,
        'files' => array_map(fn ($f) => ['name' => $f['name'], 'tmp_name' => $f['tmp_name']], $_FILES),
        'input' => file_get_contents('php://input'),
        'headers' => getallheaders(),
        'session' => $_SESSION ?? null,
        'session_id' => session_id(),
        'filter_a' => filter_input(INPUT_GET, 'a'),
        'status' => http_response_code(),
        'sent' => headers_list(),
        'askr_worker' => $_SERVER['ASKR_WORKER'] ?? null,
        'frankenphp_worker' => $_SERVER['FRANKENPHP_WORKER'] ?? null,
        'request_uri' => $_SERVER['REQUEST_URI'],
        'script_name' => $_SERVER['SCRIPT_NAME'],
        'ini' => array_map('ini_get', ['memory_limit' => 'memory_limit',
            'max_execution_time' => 'max_execution_time', 'default_charset' => 'default_charset']),
    ], JSON_UNESCAPED_SLASHES);
};

$take = getenv('ASKR_TEST_FRANKENPHP') ? 'frankenphp_handle_request' : 'askr_handle_request';
while ($take($handler)) {
    gc_collect_cycles();
    if ($returnAfter && $served >= $returnAfter) {
        break;
    }
}
