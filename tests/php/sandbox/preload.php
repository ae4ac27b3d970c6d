<?php
// opcache.preload: app code the zygote runs at startup, before any worker exists
// (tests/integration/test_sandboxing.py): what it could read and write.
$base = dirname(__FILE__);
file_put_contents($base . '/storage/preload.json', json_encode([
    'shadow' => @file_get_contents('/etc/shadow') !== false,
    'write_code' => @file_put_contents($base . '/public/preloaded.php', '<?php') !== false,
]));
