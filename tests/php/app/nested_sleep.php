<?php
// Nested calls that end in sleep(?s=): the slowlog tests look for every frame and its line.
function inner(int $s): int { return sleep($s); }
function outer(int $s): int { return Napper::nap($s); }
final class Napper { public static function nap(int $s): int { return inner($s); } }
$left = outer((int)($_GET['s'] ?? 3));
header('Content-Type: text/plain');
echo "slept, sleep() returned $left\n";
