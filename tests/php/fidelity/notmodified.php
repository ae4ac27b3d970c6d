<?php
// Conditional GET handled by the app (MediaWiki's load.php, DokuWiki's fetch.php do this).
$etag = '"v1"';
header('Content-Type: text/css; charset=utf-8');
header('ETag: ' . $etag);
header('Cache-Control: public, max-age=60');
header('Last-Modified: Tue, 01 Dec 2026 10:00:00 GMT');
header('Vary: Accept-Encoding');
header('X-App: kept');
if (isset($_GET['more'])) {
    // what a careless app also sends with its 304
    header('Content-Language: en');
    header('Content-Length: 20');
    header('Content-Encoding: gzip');
    header('Content-Disposition: inline');
    header('Content-Range: bytes 0-19/20');
    header('Transfer-Encoding: chunked');
    header('Content-Location: /notmodified.php');
    header('Expires: Wed, 02 Dec 2026 10:00:00 GMT');
}
if (($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === $etag) {
    http_response_code(isset($_GET['no-content']) ? 204 : 304);
    exit;
}
echo "body { color: red }\n";
