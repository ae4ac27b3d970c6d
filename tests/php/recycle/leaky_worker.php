<?php
// A worker script that leaks on purpose, as a cache that is never cleared would: every request
// keeps ?kb= KiB (default 1024) more in an array that lives as long as the worker. With ?dom=1
// it keeps a parsed XML document instead: libxml allocates it with malloc, outside PHP's memory
// manager, so memory_get_usage() hardly sees it but the process's memory grows all the same.
$leak = [];
$served = 0;
while (askr_handle_request(function () use (&$leak, &$served) {
    $kb = (int)($_GET['kb'] ?? 1024);
    if (!empty($_GET['dom'])) {
        $doc = new DOMDocument();
        $doc->loadXML('<r>' . str_repeat('<i a="x">y</i>', $kb * 64) . '</r>');  // ~ $kb KiB of XML
        $leak[] = $doc;
    } else {
        $leak[] = str_repeat(chr(65 + $served % 26), $kb * 1024);  // written: its pages are resident
    }
    $served++;
    header('Content-Type: application/json');
    echo json_encode(['pid' => getmypid(), 'served' => $served,
                      'php_memory' => memory_get_usage(true)]);
})) {
}
