<?php
// No Composer here: Debian's php-laravel-framework ships one autoloader for the framework and
// its dependencies; the app's own classes (App\) are mapped PSR-4 style onto app/.
require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(function (string $class): void {
    if (strncmp($class, 'App\\', 4) !== 0) {
        return;
    }
    $file = dirname(__DIR__) . '/app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
