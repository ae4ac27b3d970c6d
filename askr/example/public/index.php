<?php
// The example app bundled with askr: `askr serve` with no arguments serves it.
session_start();
$_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
$name = htmlspecialchars($_GET['name'] ?? 'world', ENT_QUOTES);
$opcache = function_exists('opcache_get_status') && (opcache_get_status(false)['opcache_enabled'] ?? false);
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Askr is serving PHP</title><link rel="stylesheet" href="/style.css"></head>
<body>
<h1>Hello, <?= $name ?>!</h1>
<p>This page was rendered by PHP <?= PHP_VERSION ?> (SAPI <code><?= PHP_SAPI ?></code>) in worker pid
<?= getmypid() ?>, OPcache <?= $opcache ? 'on' : 'off' ?>. You have visited <?= $_SESSION['visits'] ?> time(s).</p>
<form method="get"><label>Your name <input name="name" value="<?= $name ?>"></label> <button>Greet</button></form>
<p>Request: <code><?= htmlspecialchars($_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI']) ?></code></p>
</body>
</html>
