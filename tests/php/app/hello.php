<?php
// Smallest possible script: the smoke test's target.
echo "hello";
