<?php
// Status lines and reason phrases set the ways PHP apps set them.
switch ($_GET['case'] ?? '') {
    case 'http-line':
        header('HTTP/1.1 403 Access Denied');
        break;
    case 'status-header':
        header('Status: 399 Choose Your Own Adventure');
        break;
    case 'status-header-known':
        header('Status: 404 Nothing Here');
        break;
    case 'code':
        http_response_code(201);
        break;
    case 'unregistered':
        http_response_code(399);
        break;
    case 'long':
        header('HTTP/1.1 201 ' . str_repeat('Created with a long phrase ', 60));
        break;
    case 'ok-phrase':
        header('HTTP/1.1 200 Fine Thanks');
        break;
    case 'status-header-bare':
        header('Status: 404');
        break;
    case 'line-bare':
        header('HTTP/1.1 404');
        break;
    case 'line-then-code':
        header('HTTP/1.0 410 Long Gone');
        http_response_code(451);
        break;
}
echo "status test\n";
