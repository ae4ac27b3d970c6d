<?php
// Header lines PHP keeps as written, names with blanks among them ("X-A : b"): nginx refuses
// such a head from php-fpm with 502 ("upstream sent invalid header").
$cases = [
    'one-blank' => ['X-A : b'],
    'blanks' => ['X-A    : b'],
    'tab' => ["X-Foo\t: bar"],
    'only-blanks' => [' : x'],
    'managed' => ['Content-Type : text/x-custom'],
    'leading-blank' => ['X-Before: 1', ' X-Lead: y'],
    'control' => ["X\x01A: b"],
    // what nginx passes on: odd names without blanks, blanks in values
    'paren' => ['X(A): b'],
    'value-blanks' => ["X-V: a : b\tc"],
    'bare-name' => ['X-Before: 1', 'Foo', 'X-Mid: 2'],  // no colon: nginx sends "Foo: "
];
foreach ($cases[$_GET['case'] ?? ''] ?? [] as $line) {
    header($line);
}
header('X-After: 1');
if (isset($_GET['stream'])) {  // the head goes to the server at the first flush, the rest later
    echo "first\n";
    flush();
    usleep(100000);
}
echo "header names\n";
