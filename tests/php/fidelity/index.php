<?php
// The front controller: what try_files falls back to.
header('Content-Type: text/plain');
echo "front controller: ", $_SERVER['REQUEST_URI'], "\n";
