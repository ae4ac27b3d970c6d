<?php
// The few messages the fixture's form uses (laravel/laravel ships the full list).
return [
    'required' => 'The :attribute field is required.',
    'email' => 'The :attribute must be a valid email address.',
    'min' => ['string' => 'The :attribute must be at least :min characters.'],
    'attributes' => [],
];
