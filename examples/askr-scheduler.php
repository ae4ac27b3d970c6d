<?php
/*
 * Askr scheduler script for Laravel 8+: boots the application and runs `schedule:run` in this
 * process, through the console kernel (no crontab, no `php artisan` subprocess for the run).
 *
 *   [scheduler]
 *   script = "askr-scheduler.php"   # copy this file into your app (or point at it anywhere)
 *   interval = 60                   # seconds; runs at the start of every minute, like cron
 *
 * askr starts it every interval and never runs two at once. The tasks due at that moment run as
 * Laravel always runs them: `$schedule->call()` closures in this process, `$schedule->command()`
 * through `php artisan` (Laravel's own behaviour).
 *
 * The script exits 1, naming the tasks, when a scheduled task failed (a command's non-zero exit
 * status or an exception), so askr logs the failure and counts it in /api/status; later runs
 * happen as usual. The application is found at $_SERVER['ASKR_APP_BASE'] (askr sets it).
 */

use Illuminate\Console\Events\ScheduledTaskFailed;
use Illuminate\Console\Events\ScheduledTaskFinished;
use Illuminate\Contracts\Console\Kernel;
use Symfony\Component\Console\Input\ArgvInput;
use Symfony\Component\Console\Output\ConsoleOutput;

$base = $_SERVER['ASKR_APP_BASE'] ?? getcwd();
require is_file("$base/vendor/autoload.php") ? "$base/vendor/autoload.php" : "$base/bootstrap/autoload.php";

/** @var Illuminate\Foundation\Application $app */
$app = require "$base/bootstrap/app.php";
$kernel = $app->make(Kernel::class);
$kernel->bootstrap();

$failed = [];
$app['events']->listen(ScheduledTaskFinished::class, function (ScheduledTaskFinished $event) use (&$failed) {
    if ($event->task->exitCode) {
        $failed[] = $event->task->getSummaryForDisplay() . " (exit status {$event->task->exitCode})";
    }
});
$app['events']->listen(ScheduledTaskFailed::class, function (ScheduledTaskFailed $event) use (&$failed) {
    $failed[] = $event->task->getSummaryForDisplay() . ': ' . get_class($event->exception) . ': '
        . $event->exception->getMessage();
});

$input = new ArgvInput(['askr-scheduler', 'schedule:run']);
$status = $kernel->handle($input, new ConsoleOutput());
$kernel->terminate($input, $status);
foreach ($failed as $task) {
    fwrite(STDERR, "scheduled task failed: $task\n");
}
exit($status ?: ($failed ? 1 : 0));
