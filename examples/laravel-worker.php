<?php
/*
 * Askr worker script for Laravel 8+: boot the application once per PHP worker, then serve
 * requests from memory.
 *
 *   [worker]
 *   script = "public/askr-worker.php"   # copy this file there (or point at it anywhere)
 *   # app_base = "/srv/app"             # default: the parent of [server] root
 *
 * The application is found at $_SERVER['ASKR_APP_BASE'] (askr sets it: [worker] app_base, by
 * default the parent of the document root). It loads vendor/autoload.php, or, for apps built on
 * Debian's php-laravel-framework without Composer, bootstrap/autoload.php.
 *
 * Per request: capture, handle, send, terminate -- exactly what public/index.php does. Between
 * requests (after the response is out, so no client waits for it) it resets the state Laravel
 * keeps in long-lived objects, which would otherwise carry one request's data into the next:
 * the request binding, auth guards (the logged-in user), the session store's contents (they
 * would be merged into the next request's session), queued cookies, config and view data
 * changed during the request, instances bound during the request, scoped instances, open
 * database transactions, resolved facades. Your own static properties and singletons that
 * hold request data are yours to reset: see docs/worker-mode.md.
 */

use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Facade;

$base = $_SERVER['ASKR_APP_BASE'] ?? dirname(__DIR__);
require is_file("$base/vendor/autoload.php") ? "$base/vendor/autoload.php" : "$base/bootstrap/autoload.php";

/** @var Illuminate\Foundation\Application $app */
$app = require "$base/bootstrap/app.php";
$kernel = $app->make(Kernel::class);
$kernel->bootstrap();   // environment, config, providers: the part classic mode repeats per request

// What the app looks like after boot, to return to after every request.
$bootConfig = $app['config']->all();
$bootViewShared = $app->bound('view') ? $app['view']->getShared() : [];   // resolves it: it holds __env
$instances = fn (): array => (fn () => $this->instances)->call($app);   // name => instance
$bootInstances = $instances();
$sessionIdAfterReset = null;

$resetAfterRequest = function () use ($app, $bootConfig, $bootViewShared, $instances, $bootInstances,
                                      &$sessionIdAfterReset): void {
    $app->forgetInstance('request');
    // The services to reset, if they exist: read from the container's instances (a singleton
    // that was never resolved has nothing to reset) rather than resolved() and $app[...], which
    // cost about a microsecond each.
    $now = $instances();
    if (isset($now['auth'])) {
        $now['auth']->forgetGuards();
    }
    if (isset($now['session.store'])) {
        // Keep the Store object (the redirector and others hold it) but empty it: StartSession
        // merges what it loads into the attributes already there. A store nobody touched since
        // the last reset (an API route without sessions) is left as it is: emptying it again
        // would only draw a new random id, about a twentieth of such a request's PHP time.
        $store = $now['session.store'];
        if ($store->isStarted() || $store->getId() !== $sessionIdAfterReset || $store->all() !== []) {
            $store->flush();
            $store->setId(null);
            (fn () => $this->started = false)->call($store);
            $sessionIdAfterReset = $store->getId();
        }
    }
    if (isset($now['cookie'])) {
        $now['cookie']->flushQueuedCookies();
    }
    if (isset($now['db'])) {
        foreach ($now['db']->getConnections() as $connection) {
            while ($connection->transactionLevel() > 0) {
                $connection->rollBack();         // a request that died inside a transaction
            }
        }
    }
    (fn () => $this->items = $bootConfig)->call($now['config']);
    if (isset($now['view'])) {
        (fn () => $this->shared = $bootViewShared)->call($now['view']);
    }
    // Instances bound during the request (app()->instance(...)) that no binding would recreate;
    // lazily resolved singletons keep their instance (they are the point of booting once).
    foreach (array_diff_key($now, $bootInstances, $app->getBindings()) as $name => $instance) {
        $app->forgetInstance($name);
    }
    if (method_exists($app, 'forgetScopedInstances')) {
        $app->forgetScopedInstances();
    }
    Facade::clearResolvedInstances();
};

$handler = function () use ($kernel): void {
    $request = Request::capture();
    $response = $kernel->handle($request);   // exceptions become error responses in here
    $response->send();
    $kernel->terminate($request, $response);
};

$served = 0;
while (askr_handle_request($handler)) {
    try {
        $resetAfterRequest();
    } catch (Throwable $e) {
        error_log('askr laravel worker: reset failed, exiting so a fresh worker replaces this one: ' . $e);
        break;
    }
    if (++$served % 50 === 0) {
        gc_collect_cycles();   // Laravel builds reference cycles; collect them off the request path
    }
}
