<?php
// The front controller: what any path without a file under the root reaches.
http_response_code(404);
echo 'front controller: ' . $_SERVER['REQUEST_URI'];
