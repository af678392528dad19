<?php
/*
 * Include a rendered settings.php the way Drupal does and compare every value
 * with the expected ones (JSON). Usage: php assert_settings.php SETTINGS EXPECTED_JSON
 * Prints one line per check; exits 1 when one fails.
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
    [$_, $file, $expectedFile] = $argv;
    $expected = json_decode(file_get_contents($expectedFile), true, 32, JSON_THROW_ON_ERROR);
    $app_root = dirname($file, 3);
    $site_path = 'sites/' . basename(dirname($file));
    $databases = [];
    $settings = [];
    require $file;

    $failed = 0;
    $check = function (string $what, $actual, $want) use (&$failed) {
        $ok = $actual === $want;
        $failed += $ok ? 0 : 1;
        printf("%s %s%s\n", $ok ? 'ok  ' : 'FAIL', $what,
            $ok ? '' : ': got ' . var_export($actual, true) . ' want ' . var_export($want, true));
    };
    $sortKeys = function ($a) use (&$sortKeys) {
        if (!is_array($a)) {
            return $a;
        }
        if (!array_is_list($a)) {
            ksort($a);
        }
        return array_map($sortKeys, $a);
    };

    $check('primary', $sortKeys($databases['default']['default'] ?? null), $sortKeys($expected['primary']));
    $check('replicas', $sortKeys($databases['default']['replica'] ?? []), $sortKeys($expected['replicas']));
    $check('hash_salt', $settings['hash_salt'] ?? null, $expected['hash_salt']);
    $check('reverse_proxy', $settings['reverse_proxy'] ?? null, true);
    $check('reverse_proxy_addresses', $settings['reverse_proxy_addresses'] ?? null, $expected['proxies']);
    $check('reverse_proxy_trusted_headers', $settings['reverse_proxy_trusted_headers'] ?? null, $expected['headers']);
    $check('trusted_host_patterns', $settings['trusted_host_patterns'] ?? null, $expected['trusted_host_patterns']);
    foreach ($settings['trusted_host_patterns'] as $p) {
        $check("pattern $p is a valid regex", @preg_match('{' . $p . '}', '') !== false, true);
    }
    $public = $app_root . '/' . $settings['file_public_path'];
    $check('file_public_path', $settings['file_public_path'] ?? null, $site_path . '/files');
    $check('public files on the shared mount', realpath($public), $expected['public_realpath']);
    $check('file_private_path', $settings['file_private_path'] ?? null, $expected['private']);
    $check('private files outside the web root',
        str_starts_with(realpath($settings['file_private_path']) . '/', $app_root . '/'), false);
    $check('file_temp_path', $settings['file_temp_path'] ?? null, $expected['temp']);
    $check('temp is local', str_starts_with($settings['file_temp_path'] . '/', $expected['files_path'] . '/'), false);
    $check('twig php storage', $settings['php_storage']['twig']['directory'] ?? null, $expected['twig']);
    $check('twig storage is local',
        str_starts_with($settings['php_storage']['twig']['directory'] . '/', $expected['files_path'] . '/'), false);
    $check('redis host', $settings['redis.connection']['host'] ?? null, $expected['redis_host']);
    $check('redis password', $settings['redis.connection']['password'] ?? null, $expected['redis_password']);
    $check('cache backend', $settings['cache']['default'] ?? null, 'cache.backend.redis');
    echo $failed ? "$failed checks failed\n" : "all checks passed\n";
    exit($failed ? 1 : 0);
}
