<?php

namespace App\Support;

// The reload test rewrites this value on disk: a job run after a reload must report the new one.
class CodeVersion
{
    public const VALUE = 'v1';
}
