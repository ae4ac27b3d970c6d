<?php
// PHP's own logging (error_log, warnings) must reach askr's log, tagged with the worker.
error_log('askr-log-marker ' . ($_GET['m'] ?? ''));
echo 'logged';
