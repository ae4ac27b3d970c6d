<?php
// 103 Early Hints (Link only reaches the client), then the final response.
header('Link: </style.css>; rel=preload; as=style');
headers_send(103);
header('X-Final: yes');
echo 'final ', $_SERVER['SERVER_PROTOCOL'];
