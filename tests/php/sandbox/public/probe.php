<?php
// What a sandboxed PHP worker may do (tests/integration/test_sandboxing.py): ?do=ACTION&path=...
// Answers JSON. No functions or classes: worker mode includes this file on every request.
header('Content-Type: application/json');
$do = $_GET['do'] ?? '';
$path = $_GET['path'] ?? '';
$out = ['do' => $do];
if ($do === 'read') {
    $data = @file_get_contents($path);
    $out['ok'] = $data !== false;
    $out['error'] = error_get_last()['message'] ?? null;
} elseif ($do === 'list') {
    $out['ok'] = @scandir($path) !== false;
} elseif ($do === 'write') {
    $out['ok'] = @file_put_contents($path, $_GET['data'] ?? 'written by PHP') !== false;
    $out['error'] = error_get_last()['message'] ?? null;
} elseif ($do === 'syscall') {
    // ptrace(PTRACE_TRACEME) and mount(): what the seccomp filter denies, with errno
    $libc = FFI::cdef('long ptrace(int, int, void *, void *);
        int mount(const char *, const char *, const char *, unsigned long, const void *);
        int *__errno_location(void);', 'libc.so.6');
    $rc = $_GET['call'] === 'ptrace' ? $libc->ptrace(0, 0, null, null)
        : $libc->mount('none', '/mnt', 'tmpfs', 0, null);
    $out['rc'] = $rc;
    $out['errno'] = $libc->__errno_location()[0];
} elseif ($do === 'ioctl') {
    // one ioctl() request on stdin (/dev/null, no terminal), with errno
    $libc = FFI::cdef('int ioctl(int, unsigned long, const char *); int *__errno_location(void);', 'libc.so.6');
    $out['rc'] = $libc->ioctl(0, (int) $_GET['request'], 'x');
    $out['errno'] = $libc->__errno_location()[0];
} elseif ($do === 'connect') {
    $out['ok'] = @fsockopen('127.0.0.1', (int) $_GET['port'], $no, $err, 5) !== false;
    $out['error'] = $err;
} elseif ($do === 'exec') {
    $out['output'] = shell_exec($_GET['cmd']);
} elseif ($do === 'session') {
    session_start();
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    $out['n'] = $_SESSION['n'];
    $out['file'] = session_save_path() . '/sess_' . session_id();
    session_write_close();
} elseif ($do === 'upload') {
    $file = $_FILES['file'] ?? null;
    $out['tmp_dir'] = dirname($file['tmp_name'] ?? '');
    $out['ok'] = $file !== null && move_uploaded_file($file['tmp_name'], $path);
}
echo json_encode($out);
