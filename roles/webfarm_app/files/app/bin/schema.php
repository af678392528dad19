<?php
/*
 * Create the app's tables on the primary when missing. Prints JSON
 * {"created": [...]}; the deploying role reports "changed" when the list is
 * not empty. Usage: php bin/schema.php [CONFIG]
 */

declare(strict_types=1);

require dirname(__DIR__) . '/src/App.php';

$cfg = Webfarm\App::loadConfig($argv[1] ?? null);
$created = Webfarm\Schema::ensure(Webfarm\App::connect($cfg['db'], $cfg['db']['host'], (int) $cfg['db']['port']));
echo json_encode(['created' => $created]), "\n";
