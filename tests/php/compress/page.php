<?php
// A ~20 KB HTML page with a strong ETag, revalidated the way Symfony (Laravel) does it: If-None-Match
// compared weakly (W/ stripped on both sides), so the W/ tag a compressed answer carries still
// gets a 304.
$etag = '"page-v1"';
header('Content-Type: text/html; charset=UTF-8');
header("ETag: $etag");
$inm = $_SERVER['HTTP_IF_NONE_MATCH'] ?? '';
foreach (array_map('trim', explode(',', $inm)) as $tag) {
    if ($tag !== '' && preg_replace('#^W/#', '', $tag) === $etag) {
        http_response_code(304);
        exit;
    }
}
echo "<!DOCTYPE html>\n<html><head><title>compressed</title><link rel=\"stylesheet\" href=\"app.css\"></head><body>\n<ul id=\"items\">\n";
for ($i = 1; $i <= 400; $i++) {
    echo "<li class=\"item\">Item number $i of the compressed page</li>\n";
}
echo "</ul>\n<script src=\"app.js\"></script>\n</body></html>\n";
