<?php

use Illuminate\Support\Facades\Artisan;
use Illuminate\Support\Facades\DB;

// Scheduled by App\Console\Kernel: one that records a tick, one that always fails.
Artisan::command('fixture:tick', function () {
    DB::table('ticks')->insert(['source' => 'command', 'pid' => getmypid(), 'at' => microtime(true)]);
    $this->info('tick');
});

Artisan::command('fixture:fail', function () {
    $this->error('fixture:fail is failing on purpose');
    return 1;
});
