<?php
// Every $_SERVER entry and what getallheaders() says, for a side-by-side comparison.
header('Content-Type: application/json');
$server = $_SERVER;
ksort($server);
echo json_encode(['server' => $server, 'headers' => array_change_key_case(getallheaders())]);
