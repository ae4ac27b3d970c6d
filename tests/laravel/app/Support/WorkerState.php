<?php

namespace App\Support;

// Per-process state: in classic mode it lives for one request, in worker mode for the worker.
class WorkerState
{
    public static ?string $bootId = null;
    public static int $requests = 0;
    public static ?string $leakStatic = null;
}
