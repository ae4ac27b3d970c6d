<?php
header('Content-Type: text/html');
header('Cache-Control: no-transform');
echo str_repeat("<p>do not transform</p>\n", 300);
