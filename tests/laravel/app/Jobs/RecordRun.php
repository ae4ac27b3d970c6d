<?php

namespace App\Jobs;

use App\Support\CodeVersion;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Support\Facades\DB;

// Records that it ran (who ran it, with which code), working for $seconds in between.
class RecordRun implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable;

    public function __construct(public string $key, public float $seconds = 0.0)
    {
    }

    public function handle(): void
    {
        $id = DB::table('job_runs')->insertGetId([
            'job_key' => $this->key, 'pid' => getmypid(), 'sapi' => PHP_SAPI,
            'code_version' => CodeVersion::VALUE, 'started_at' => microtime(true),
        ]);
        // Busy for $seconds; not one sleep(), which a signal (SIGTERM) would cut short.
        $until = microtime(true) + $this->seconds;
        while (($left = $until - microtime(true)) > 0) {
            usleep((int) min(50000, $left * 1e6));
        }
        DB::table('job_runs')->where('id', $id)->update(['finished_at' => microtime(true)]);
    }
}
