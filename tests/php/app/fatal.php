<?php
// A fatal error before any output.
askr_this_function_does_not_exist();
