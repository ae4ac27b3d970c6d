<?php
// Multipart uploads through PHP's own rfc1867 parser.
header('Content-Type: application/json');
$out = [];
foreach ($_FILES as $field => $f) {
    $uploaded = is_uploaded_file($f['tmp_name']);
    $dest = tempnam(sys_get_temp_dir(), 'askr-up-');
    $moved = $uploaded && move_uploaded_file($f['tmp_name'], $dest);
    $out[$field] = [
        'name' => $f['name'],
        'type' => $f['type'],
        'error' => $f['error'],
        'size' => $f['size'],
        'is_uploaded_file' => $uploaded,
        'moved' => $moved,
        'stored_size' => $moved ? filesize($dest) : null,
        'md5' => $moved ? md5_file($dest) : null,
    ];
    @unlink($dest);
}
echo json_encode(['files' => $out, 'post' => $_POST], JSON_UNESCAPED_SLASHES);
