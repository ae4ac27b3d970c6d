<?php
// No header() call: PHP's default Content-Type (text/html; charset=UTF-8) is what askr sees.
echo str_repeat("<p>a page with PHP's default type</p>\n", 100);
