<?php
// Reads php://input in 1 MiB pieces; reports its length and sha1 (large uploads, no big strings).
$in = fopen('php://input', 'rb');
$ctx = hash_init('sha1');
$length = 0;
while (!feof($in)) {
    $piece = fread($in, 1 << 20);
    if ($piece === false || $piece === '') {
        break;
    }
    $length += strlen($piece);
    hash_update($ctx, $piece);
}
header('Content-Type: application/json');
echo json_encode(['length' => $length, 'sha1' => hash_final($ctx), 'protocol' => $_SERVER['SERVER_PROTOCOL'],
                  'content_length' => $_SERVER['CONTENT_LENGTH'] ?? null, 'pid' => getmypid()]);
