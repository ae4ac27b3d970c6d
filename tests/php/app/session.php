<?php
// A per-session counter: proves the session cookie round-trips and state persists.
$dir = sys_get_temp_dir() . '/askr-test-sessions';
if (!is_dir($dir)) {
    @mkdir($dir, 0700, true);
}
session_save_path($dir);
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: application/json');
echo json_encode(['n' => $_SESSION['n'], 'id' => session_id()]);
