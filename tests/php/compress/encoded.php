<?php
// A script that encodes its body itself and says so.
header('Content-Type: text/plain');
header('Content-Encoding: gzip');
echo gzencode(str_repeat("gzipped by the script\n", 300));
