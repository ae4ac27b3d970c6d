<?php

use App\Support\WorkerState;
use Illuminate\Auth\GenericUser;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Auth;
use Illuminate\Support\Facades\Cookie;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Route;
use Illuminate\Support\Facades\View;

// Request-scoped data, and who served it: the same boot id across requests means worker mode.
Route::get('/whoami', function (Request $request) {
    WorkerState::$requests++;
    if ($request->query('client') !== null) {
        session(['client' => $request->query('client')]);
    }
    return response()->json([
        'query' => $request->query(),
        'cookie' => $request->cookie('client'),
        'session' => session('client'),
        'method' => $request->method(),
        'path' => $request->path(),
        'request_uri' => $_SERVER['REQUEST_URI'],
        'header' => $request->header('X-Client'),
        'pid' => getmypid(),
        'boot_id' => WorkerState::$bootId,
        'requests' => WorkerState::$requests,
    ]);
});

Route::post('/form', function (Request $request) {
    $data = $request->validate(['name' => 'required|min:3', 'email' => 'required|email']);
    return response()->json(['saved' => $data]);
});

Route::get('/form', function () {
    return response()->json(['errors' => session('errors') ? session('errors')->getMessages() : []]);
});

Route::get('/counter', function () {
    $count = session('count', 0) + 1;
    session(['count' => $count]);
    return response()->json(['count' => $count]);
});

Route::post('/upload', function (Request $request) {
    $file = $request->file('file');
    abort_unless($file && $file->isValid(), 422, 'no file');
    $stored = $file->storeAs('uploads', bin2hex(random_bytes(6)) . '-' . basename($file->getClientOriginalName()));
    return response()->json([
        'name' => $file->getClientOriginalName(),
        'size' => $file->getSize(),
        'sha1' => sha1_file(storage_path('app/' . $stored)),
    ]);
});

Route::get('/notes', function () {
    return response()->json(DB::table('notes')->orderBy('id')->get(['id', 'body']));
});

Route::post('/notes', function (Request $request) {
    $body = (string) $request->input('body');
    $id = DB::table('notes')->insertGetId(['body' => $body, 'created_at' => now(), 'updated_at' => now()]);
    return response()->json(['id' => $id, 'body' => $body], 201);
});

Route::get('/boom', function () {
    throw new RuntimeException('boom');
});

// Tries to carry ?secret= into later requests through every kind of framework state. In worker
// mode the worker script must reset all of these ("seen" stays null); the plain PHP static and
// global under "process_state" belong to the app and are documented as kept.
Route::get('/leak', function (Request $request) {
    $seen = [
        'request_input' => request('leak_secret'),
        'auth_user' => Auth::user() ? Auth::user()->getAuthIdentifier() : null,
        'session' => session('leak_secret'),
        'queued_cookie' => Cookie::hasQueued('leak') ? Cookie::queued('leak')->getValue() : null,
        'config' => config('leak.secret'),
        'view_shared' => View::shared('leak'),
        'container' => app()->bound('leak.instance') ? app('leak.instance') : null,
    ];
    $process = ['static' => WorkerState::$leakStatic, 'global' => $GLOBALS['leak'] ?? null];
    $secret = (string) $request->query('secret');
    $request->merge(['leak_secret' => $secret]);
    Auth::setUser(new GenericUser(['id' => $secret]));
    session(['leak_secret' => $secret]);
    Cookie::queue('leak', $secret);
    config(['leak.secret' => $secret]);
    View::share('leak', $secret);
    app()->instance('leak.instance', $secret);
    WorkerState::$leakStatic = $secret;
    $GLOBALS['leak'] = $secret;
    return response()->json(['seen' => $seen, 'process_state' => $process, 'stored' => $secret]);
});

// Queue a job (the database queue): ?key= names it, ?seconds= is how long it works.
Route::post('/jobs', function (Request $request) {
    App\Jobs\RecordRun::dispatch((string) $request->query('key'), (float) $request->query('seconds', 0));
    return response()->json(['queued' => $request->query('key')], 202);
});

Route::get('/stream', function () {
    return response()->stream(function () {
        for ($i = 1; $i <= 5; $i++) {
            echo "line $i\n";
            flush();
        }
    }, 200, ['Content-Type' => 'text/plain']);
});

// A download as Laravel apps write it; with X-Sendfile trusted, BinaryFileResponse names the file
// in a header (when the front sends X-Sendfile-Type) instead of streaming it from PHP.
Route::get('/download/{name}', function (string $name) {
    \Symfony\Component\HttpFoundation\BinaryFileResponse::trustXSendfileTypeHeader();
    return response()->download(storage_path('app/private/' . basename($name)), 'report.pdf');
});
