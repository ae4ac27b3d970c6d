<?php echo "from php";
