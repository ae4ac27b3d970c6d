<?php
/*
 * Askr queue worker script for Laravel 8+: boots the application and runs `queue:work` in this
 * process, through the console kernel (no `php artisan` subprocess).
 *
 *   [queue]
 *   script = "askr-queue.php"     # copy this file into your app (or point at it anywhere)
 *   workers = 2
 *   max_jobs = 1000               # passed as --max-jobs: the worker exits and askr starts a new one
 *   max_time = 3600               # passed as --max-time
 *   args = ["--tries=3", "--queue=high,default"]
 *
 * askr runs it with PHP's CLI (`[worker] php_cli`), so PHP_SAPI is "cli" and queue:work's pcntl
 * signal handling works: on shutdown and reload askr sends SIGTERM, the worker finishes the job in
 * hand and exits. Everything after the script name on its command line (--max-jobs, --max-time,
 * [queue] args) is handed to queue:work, so `php askr-queue.php --once` works by hand too.
 *
 * The application is found at $_SERVER['ASKR_APP_BASE'] (askr sets it: [worker] app_base, by
 * default the parent of [server] root; askr also starts the script there).
 */

use Illuminate\Contracts\Console\Kernel;
use Symfony\Component\Console\Input\ArgvInput;
use Symfony\Component\Console\Output\ConsoleOutput;

$base = $_SERVER['ASKR_APP_BASE'] ?? getcwd();
require is_file("$base/vendor/autoload.php") ? "$base/vendor/autoload.php" : "$base/bootstrap/autoload.php";

/** @var Illuminate\Foundation\Application $app */
$app = require "$base/bootstrap/app.php";
$kernel = $app->make(Kernel::class);

$input = new ArgvInput(['askr-queue', 'queue:work', ...array_slice($argv, 1)]);
$status = $kernel->handle($input, new ConsoleOutput());
$kernel->terminate($input, $status);
exit($status);
