<?php
/*
 * A plain-PHP askr worker script (no framework): what any worker script does.
 *
 *   askr serve --root public --worker examples/worker.php
 *
 * Everything before the loop runs once per PHP worker: load code, read configuration, open
 * connections, warm caches. Each call to askr_handle_request() waits for one request, gives the
 * handler fresh $_GET/$_POST/$_COOKIE/$_FILES/$_SERVER (and php://input, headers, status 200),
 * sends what the handler output, and returns true; it returns false when this worker should
 * stop (shutdown, reload, recycling), and the script should then end.
 */

// Boot: done once, kept for every request this worker serves.
$bootedAt = microtime(true);
$routes = [
    '/' => fn (): array => ['hello' => $_GET['name'] ?? 'world'],
    '/time' => fn (): array => ['now' => date(DATE_ATOM)],
];
$served = 0;   // lives as long as the worker: that is what worker mode is for

$handler = function () use ($routes, $bootedAt, &$served): void {
    $served++;
    $path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
    $route = $routes[$path] ?? null;
    header('Content-Type: application/json');
    if ($route === null) {
        http_response_code(404);
        echo json_encode(['error' => 'not found']);
        return;
    }
    // An exception thrown here becomes a 500 for this request only; the worker goes on.
    echo json_encode($route() + [
        'worker' => getmypid(),
        'served_by_this_worker' => $served,
        'booted_seconds_ago' => round(microtime(true) - $bootedAt, 3),
    ]);
};

while (askr_handle_request($handler)) {
    // Between requests: the response is already sent, so housekeeping costs no client anything.
    if ($served % 100 === 0) {
        gc_collect_cycles();
    }
}
