<?php
// Kills its own PHP worker (SIGKILL) before any output, as a segfaulting extension or the OOM
// killer would: every request to it costs a worker. (SIGKILL rather than SIGSEGV: no core file.)
posix_kill(getmypid(), 9);
echo "still alive";
