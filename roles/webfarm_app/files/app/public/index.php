<?php
/*
 * colo.webfarm reference app: front controller. Every URL that is not a
 * file goes here (Apache: RewriteRule in the web_linux vhost; IIS: URL
 * Rewrite). Configuration comes from config/config.php next to public/, or
 * from the file named by the WEBFARM_APP_CONFIG environment variable.
 */

declare(strict_types=1);

require dirname(__DIR__) . '/src/App.php';

(new Webfarm\App(Webfarm\App::loadConfig()))->run($_SERVER['REQUEST_URI'] ?? '/');
