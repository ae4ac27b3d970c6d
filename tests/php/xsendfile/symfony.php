<?php
// Symfony's BinaryFileResponse as an app serves a download, with X-Sendfile trusted: it names
// the file in a header when the request carries X-Sendfile-Type. Afterwards the script writes
// to ?report= how many body bytes PHP itself produced, and the X-Sendfile-Type it was given.
require_once '/usr/share/php/Symfony/Component/HttpFoundation/autoload.php';

use Symfony\Component\HttpFoundation\BinaryFileResponse;
use Symfony\Component\HttpFoundation\Request;

BinaryFileResponse::trustXSendfileTypeHeader();
$response = new BinaryFileResponse($_GET['path']);
$response->setContentDisposition('attachment', 'report.pdf');
$request = Request::createFromGlobals();
$bytes = 0;
ob_start(function (string $chunk) use (&$bytes) {
    $bytes += strlen($chunk);
    return $chunk;
});
$response->prepare($request)->send();
while (ob_get_level()) {
    ob_end_flush();
}
file_put_contents($_GET['report'], $bytes . ' ' . ($_SERVER['HTTP_X_SENDFILE_TYPE'] ?? '-'));
