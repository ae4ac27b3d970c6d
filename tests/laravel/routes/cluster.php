<?php

use App\Jobs\ClusterJob;
use App\Support\CodeVersion;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Route;

// Routes for several askr hosts behind HAProxy (tests/cluster, bench/cluster.py). CLUSTER_HOST
// names the host in each answer; CodeVersion says which release answered.

Route::middleware('api')->group(function () {
    Route::get('/cluster/whoami', function (Request $request) {
        return response()->json([
            'host' => env('CLUSTER_HOST', gethostname()),
            'code' => CodeVersion::VALUE,
            'pid' => getmypid(),
            'client_ip' => $request->ip(),   // REMOTE_ADDR: askr takes it from a trusted proxy's X-Forwarded-For
            'secure' => $request->secure(),
        ]);
    });

    Route::post('/cluster/echo', function (Request $request) {
        $body = $request->getContent();
        return response()->json(['length' => strlen($body), 'sha1' => sha1($body),
                                 'host' => env('CLUSTER_HOST', gethostname()), 'code' => CodeVersion::VALUE]);
    });

    // Queue a ClusterJob on the default connection (redis in the cluster tests).
    Route::post('/cluster/jobs', function (Request $request) {
        ClusterJob::dispatch((string) $request->query('batch'), (string) $request->query('id'),
                             (float) $request->query('seconds', 0));
        return response()->json(['queued' => $request->query('id'),
                                 'host' => env('CLUSTER_HOST', gethostname())], 202);
    });
});

Route::middleware('web')->group(function () {
    Route::post('/cluster/login', function (Request $request) {
        $request->session()->regenerate();
        session(['user' => (string) $request->input('user'), 'count' => 0]);
        return response()->json(['user' => session('user')]);
    });

    // One more request in this logged-in session: Laravel's session counter, and PHP's own
    // session ($_SESSION, stored by session.save_handler from askr's [worker] ini) beside it.
    Route::get('/cluster/counter', function () {
        abort_unless(session()->has('user'), 401, 'not logged in');
        $count = session('count') + 1;
        session(['count' => $count]);
        session_start();
        $_SESSION['count'] = ($_SESSION['count'] ?? 0) + 1;
        $native = $_SESSION['count'];
        session_write_close();
        return response()->json([
            'user' => session('user'), 'count' => $count, 'native_count' => $native,
            'native_handler' => ini_get('session.save_handler'),
            'host' => env('CLUSTER_HOST', gethostname()), 'code' => CodeVersion::VALUE,
        ]);
    });
});
