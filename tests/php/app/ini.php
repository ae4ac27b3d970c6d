<?php
// Reports one ini value: ?k=name
echo json_encode(['key' => $_GET['k'] ?? '', 'value' => ini_get($_GET['k'] ?? '')]);
