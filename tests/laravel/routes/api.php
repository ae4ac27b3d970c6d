<?php

use Illuminate\Support\Facades\Route;

// The benchmark route: no session, no cookies, the smallest useful Laravel response.
Route::get('/api/json', function () {
    return response()->json(['hello' => 'world', 'framework' => 'laravel', 'version' => app()->version()]);
});
