<?php
// Worker-mode twin of the classic fixture app (tests/php/app): one booted worker runs the same
// scripts, so the behaviour suite can check that both modes look identical from inside PHP.
while (askr_handle_request(function () {
    require $_SERVER['SCRIPT_FILENAME'];
})) {
}
