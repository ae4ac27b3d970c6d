<?php
// Creates the file ?f= : lets a test detect that a request reached PHP at all.
file_put_contents($_GET['f'] ?? (sys_get_temp_dir() . '/askr-mark'), 'reached');
echo "marked";
