<?php
/*
 * Include a rendered settings.php the way Drupal does and print $databases
 * and $settings as JSON. Usage: php dump_settings.php SETTINGS
 */

declare(strict_types=1);

namespace Symfony\Component\HttpFoundation {
    // The values of Symfony's Request constants (Symfony 6/7, Drupal 10/11).
    class Request
    {
        public const HEADER_FORWARDED = 0b000001;
        public const HEADER_X_FORWARDED_FOR = 0b000010;
        public const HEADER_X_FORWARDED_HOST = 0b000100;
        public const HEADER_X_FORWARDED_PROTO = 0b001000;
        public const HEADER_X_FORWARDED_PORT = 0b010000;
    }
}

namespace {
    $app_root = '/nonexistent';
    $site_path = 'sites/default';
    $databases = [];
    $settings = [];
    require $argv[1];
    echo json_encode(['databases' => $databases, 'settings' => $settings], JSON_THROW_ON_ERROR), "\n";
}
