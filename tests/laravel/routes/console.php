<?php
// No console routes; the file exists because the console kernel loads it.
