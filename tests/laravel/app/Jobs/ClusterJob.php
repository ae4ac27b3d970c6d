<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Support\Facades\Redis;

// The cluster tests' job (tests/cluster): records in Redis that it started and that it finished,
// and on which host, so a test can count runs per job across every host's queue workers.
class ClusterJob implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable;

    public function __construct(public string $batch, public string $id, public float $seconds = 0.0)
    {
    }

    public function handle(): void
    {
        $redis = Redis::connection();
        $host = (string) env('CLUSTER_HOST', gethostname());
        $redis->hincrby("cluster:{$this->batch}:starts", $this->id, 1);
        $redis->hset("cluster:{$this->batch}:started_on", $this->id, $host);
        // Busy for $seconds; not one sleep(), which a signal (SIGTERM) would cut short.
        $until = microtime(true) + $this->seconds;
        while (($left = $until - microtime(true)) > 0) {
            usleep((int) min(50000, $left * 1e6));
        }
        $redis->hincrby("cluster:{$this->batch}:runs", $this->id, 1);
        $redis->hset("cluster:{$this->batch}:ran_on", $this->id, $host);
    }
}
