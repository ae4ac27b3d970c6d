<?php
// PHP compresses its own output (zlib.output_compression): askr must pass it through untouched.
ini_set('zlib.output_compression', '1');
header('Content-Type: text/html');
echo str_repeat("<p>compressed by PHP itself</p>\n", 300);
