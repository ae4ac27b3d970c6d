<?php
echo "wp-admin\n";
