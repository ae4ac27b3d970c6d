<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    protected $commands = [];

    protected function schedule(Schedule $schedule)
    {
        $schedule->command('fixture:tick')->everyMinute();
        $schedule->call(function () {
            \Illuminate\Support\Facades\DB::table('ticks')->insert(['source' => 'closure', 'pid' => getmypid(), 'at' => microtime(true)]);
        })->everyMinute()->name('fixture closure tick');
        if (env('FIXTURE_SCHEDULE_FAIL')) {
            $schedule->command('fixture:fail')->everyMinute();
        }
    }

    protected function commands()
    {
        require base_path('routes/console.php');
    }
}
