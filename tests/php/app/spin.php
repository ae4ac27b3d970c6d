<?php
// Busy in PHP code (CPU time) for ?s= seconds of wall time, or until max_execution_time stops it.
function spin(float $until): int { $n = 0; while (microtime(true) < $until) { $n++; } return $n; }
echo spin(microtime(true) + (float)($_GET['s'] ?? 1)) > 0 ? "spun\n" : "never\n";
