<?php
// PHP picks the status of a bare Location header itself (302 or 303).
header('Location: /target');
