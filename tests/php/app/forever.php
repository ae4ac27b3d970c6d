<?php
// Streams until the client goes away (an SSE-style endless response).
while (ob_get_level()) {
    ob_end_flush(); // php.ini's output_buffering would hold the ticks back; flush() alone is not enough
}
while (true) {
    echo "tick\n";
    flush();
    usleep(20000);
}
