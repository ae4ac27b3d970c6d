<?php
// Front controller: what try_files falls back to for paths that are not files.
echo "askr bench docroot\n";
