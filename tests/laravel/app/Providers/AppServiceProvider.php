<?php

namespace App\Providers;

use App\Support\WorkerState;
use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function boot(): void
    {
        // Runs once per boot: per request in classic mode, once per worker in worker mode.
        WorkerState::$bootId ??= bin2hex(random_bytes(8));
    }
}
