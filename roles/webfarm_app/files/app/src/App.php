<?php
/*
 * colo.webfarm reference app. Routes (JSON unless noted):
 *   <health>         200 "OK" when PHP answers (cheap; balancers poll it)
 *   <health>/deep    database and shared files checked, each reported; 503 if one fails
 *   /whoami          node, route, client address as the app sees it, scheme
 *   /session         per-user counter in the configured session store
 *   /db/write        POST: insert a row on the primary, return its id
 *   /db/read?id=N    read it from a replica when configured (else primary), with lag
 *   /files/put?name= POST body: write a file in the shared files path
 *   /files/get?name= the file's bytes
 * No OS-specific paths: everything comes from the config array.
 */

declare(strict_types=1);

namespace Webfarm;

require_once __DIR__ . '/DbSessionHandler.php';
require_once __DIR__ . '/Schema.php';

final class App
{
    private const NAME_RE = '/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/';
    private const MAX_FILE = 1048576;

    private array $cfg;
    private ?\PDO $primary = null;

    public function __construct(array $cfg)
    {
        $this->cfg = $cfg;
    }

    public static function loadConfig(?string $path = null): array
    {
        $path = $path
            ?? (getenv('WEBFARM_APP_CONFIG') ?: null)
            ?? ($_SERVER['WEBFARM_APP_CONFIG'] ?? null)
            ?? dirname(__DIR__) . DIRECTORY_SEPARATOR . 'config' . DIRECTORY_SEPARATOR . 'config.php';
        $cfg = require $path;
        if (!is_array($cfg)) {
            throw new \RuntimeException("config file $path does not return an array");
        }
        return $cfg;
    }

    public static function connect(array $db, string $host, int $port): \PDO
    {
        $dsn = sprintf('mysql:host=%s;port=%d;dbname=%s;charset=utf8mb4', $host, $port, $db['name']);
        return new \PDO($dsn, $db['user'], $db['password'], [
            \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
            \PDO::ATTR_TIMEOUT => (int) ($db['timeout'] ?? 3),
            \PDO::ATTR_DEFAULT_FETCH_MODE => \PDO::FETCH_ASSOC,
        ]);
    }

    private function primary(): \PDO
    {
        return $this->primary ??= self::connect($this->cfg['db'], $this->cfg['db']['host'], (int) $this->cfg['db']['port']);
    }

    public function run(string $uri): void
    {
        $path = rtrim((string) (parse_url($uri, PHP_URL_PATH) ?: '/'), '/') ?: '/';
        $health = rtrim((string) ($this->cfg['health_path'] ?? '/health'), '/');
        try {
            match ($path) {
                $health => $this->text(200, "OK\n"),
                $health . '/deep' => $this->deepHealth(),
                '/whoami' => $this->whoami(),
                '/session' => $this->session(),
                '/db/write' => $this->dbWrite(),
                '/db/read' => $this->dbRead(),
                '/files/put' => $this->filesPut(),
                '/files/get' => $this->filesGet(),
                default => $this->json(404, ['error' => 'not found', 'path' => $path]),
            };
        } catch (\Throwable $e) {
            error_log(sprintf('webfarm_app %s: %s: %s', $path, get_class($e), $e->getMessage()));
            $this->json(500, ['error' => get_class($e), 'message' => $e->getMessage()]);
        }
    }

    // ------------------------------------------------------------ output --

    private function json(int $status, array $body): void
    {
        http_response_code($status);
        header('Content-Type: application/json');
        header('Cache-Control: no-store');
        header('X-Webfarm-Node: ' . $this->cfg['node']);
        echo json_encode($body + ['node' => $this->cfg['node']], JSON_UNESCAPED_SLASHES), "\n";
    }

    private function text(int $status, string $body, string $type = 'text/plain'): void
    {
        http_response_code($status);
        header('Content-Type: ' . $type);
        header('Cache-Control: no-store');
        header('X-Webfarm-Node: ' . $this->cfg['node']);
        echo $body;
    }

    private function requirePost(): bool
    {
        if (($_SERVER['REQUEST_METHOD'] ?? 'GET') !== 'POST') {
            header('Allow: POST');
            $this->json(405, ['error' => 'use POST']);
            return false;
        }
        return true;
    }

    private static function scheme(): string
    {
        $https = strtolower((string) ($_SERVER['HTTPS'] ?? ''));
        return ($https !== '' && $https !== 'off') ? 'https' : 'http';
    }

    // ------------------------------------------------------------ routes --

    private function whoami(): void
    {
        $opcache = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
        $this->json(200, [
            'route' => $this->cfg['route'],
            'client' => $_SERVER['REMOTE_ADDR'] ?? null,
            'scheme' => self::scheme(),
            'host' => $_SERVER['HTTP_HOST'] ?? null,
            'session_store' => $this->cfg['session']['store'],
            'opcache' => is_array($opcache) && !empty($opcache['opcache_enabled']),
            'sapi' => PHP_SAPI,
            'php' => PHP_VERSION,
            'temp_dir' => sys_get_temp_dir(),
        ]);
    }

    private function startSession(): void
    {
        $s = $this->cfg['session'];
        switch ($s['store']) {
            case 'database':
                session_set_save_handler(new DbSessionHandler(fn () => $this->primary(), (int) $s['lifetime']), true);
                break;
            case 'redis':
                ini_set('session.save_handler', 'redis');
                ini_set('session.save_path', $s['save_path']);
                break;
            case 'files':
                ini_set('session.save_handler', 'files');
                ini_set('session.save_path', $s['save_path']);
                break;
            default:
                throw new \RuntimeException('unknown session store ' . $s['store']);
        }
        ini_set('session.gc_maxlifetime', (string) $s['lifetime']);
        ini_set('session.use_strict_mode', '1');
        ini_set('session.cookie_httponly', '1');
        session_name($s['name']);
        if (!session_start()) {
            throw new \RuntimeException('session_start failed for store ' . $s['store']);
        }
    }

    private function session(): void
    {
        $this->startSession();
        $_SESSION['count'] = (int) ($_SESSION['count'] ?? 0) + 1;
        $_SESSION['nodes'][] = $this->cfg['node'];
        $_SESSION['nodes'] = array_slice($_SESSION['nodes'], -10);
        $body = ['count' => $_SESSION['count'], 'store' => $this->cfg['session']['store'], 'nodes' => $_SESSION['nodes']];
        session_write_close();
        $this->json(200, $body);
    }

    private function dbWrite(): void
    {
        if (!$this->requirePost()) {
            return;
        }
        $payload = substr((string) ($_POST['value'] ?? file_get_contents('php://input')), 0, 255);
        $st = $this->primary()->prepare('INSERT INTO webfarm_rows (node, payload) VALUES (?, ?)');
        $st->execute([$this->cfg['node'], $payload]);
        $this->json(200, ['id' => (int) $this->primary()->lastInsertId(), 'primary' => $this->cfg['db']['host']]);
    }

    private function dbRead(): void
    {
        $id = filter_var($_GET['id'] ?? null, FILTER_VALIDATE_INT, ['options' => ['min_range' => 1]]);
        if ($id === false || $id === null) {
            $this->json(400, ['error' => 'id must be a positive integer']);
            return;
        }
        $db = $this->cfg['db'];
        $tried = [];
        foreach ($db['replicas'] ?? [] as $replica) {
            $name = $replica['host'] . ':' . $replica['port'];
            try {
                $pdo = self::connect($db, $replica['host'], (int) $replica['port']);
                $row = $this->fetchRow($pdo, $id);
                $lag = null;
                try {
                    $status = $pdo->query('SHOW SLAVE STATUS')->fetch();
                    $lag = is_array($status) ? $status['Seconds_Behind_Master'] : null;
                } catch (\PDOException $e) {
                    $lag = null; // the app user may lack the REPLICA MONITOR privilege
                }
                if ($row !== null) {
                    $this->json(200, ['row' => $row, 'answered_by' => 'replica', 'server' => $name,
                        'lag_seconds' => $lag === null ? null : (int) $lag, 'tried' => $tried]);
                    return;
                }
                $tried[] = ['server' => $name, 'result' => 'row not there (yet)', 'lag_seconds' => $lag];
            } catch (\PDOException $e) {
                $tried[] = ['server' => $name, 'result' => 'error: ' . $e->getMessage()];
            }
        }
        $row = $this->fetchRow($this->primary(), $id);
        $this->json($row === null ? 404 : 200, ['row' => $row, 'answered_by' => 'primary',
            'server' => $db['host'] . ':' . $db['port'], 'lag_seconds' => 0, 'tried' => $tried]);
    }

    private function fetchRow(\PDO $pdo, int $id): ?array
    {
        $st = $pdo->prepare('SELECT id, node, payload, created_at FROM webfarm_rows WHERE id = ?');
        $st->execute([$id]);
        $row = $st->fetch();
        return $row === false ? null : $row;
    }

    private function fileName(): ?string
    {
        $name = (string) ($_GET['name'] ?? '');
        if (!preg_match(self::NAME_RE, $name)) {
            $this->json(400, ['error' => 'name must match ' . self::NAME_RE]);
            return null;
        }
        return $name;
    }

    private function filesPut(): void
    {
        if (!$this->requirePost() || ($name = $this->fileName()) === null) {
            return;
        }
        $data = file_get_contents('php://input', false, null, 0, self::MAX_FILE + 1);
        if ($data === false || strlen($data) > self::MAX_FILE) {
            $this->json(413, ['error' => 'at most ' . self::MAX_FILE . ' bytes']);
            return;
        }
        $dir = $this->cfg['files_path'];
        $tmp = $dir . DIRECTORY_SEPARATOR . '.tmp-' . $this->cfg['node'] . '-' . bin2hex(random_bytes(6));
        if (file_put_contents($tmp, $data) === false || !rename($tmp, $dir . DIRECTORY_SEPARATOR . $name)) {
            @unlink($tmp);
            throw new \RuntimeException("cannot write $name in $dir");
        }
        $this->json(200, ['name' => $name, 'bytes' => strlen($data), 'sha256' => hash('sha256', $data)]);
    }

    private function filesGet(): void
    {
        if (($name = $this->fileName()) === null) {
            return;
        }
        clearstatcache();
        $file = $this->cfg['files_path'] . DIRECTORY_SEPARATOR . $name;
        $data = is_file($file) ? file_get_contents($file) : false;
        if ($data === false) {
            $this->json(404, ['error' => 'no such file', 'name' => $name]);
            return;
        }
        $this->text(200, $data, 'application/octet-stream');
    }

    private function deepHealth(): void
    {
        $checks = [];
        $t = microtime(true);
        try {
            $this->primary()->query('SELECT 1 FROM webfarm_rows LIMIT 1');
            $checks['database'] = ['ok' => true, 'server' => $this->cfg['db']['host']];
        } catch (\Throwable $e) {
            $checks['database'] = ['ok' => false, 'server' => $this->cfg['db']['host'], 'error' => $e->getMessage()];
        }
        $checks['database']['ms'] = round((microtime(true) - $t) * 1000, 1);

        $t = microtime(true);
        $probe = $this->cfg['files_path'] . DIRECTORY_SEPARATOR . '.health-' . $this->cfg['node'];
        $token = bin2hex(random_bytes(8));
        $ok = @file_put_contents($probe, $token) !== false;
        clearstatcache();
        $ok = $ok && @file_get_contents($probe) === $token;
        @unlink($probe);
        $checks['files'] = ['ok' => $ok, 'path' => $this->cfg['files_path'], 'ms' => round((microtime(true) - $t) * 1000, 1)];
        if (!$ok) {
            $checks['files']['error'] = 'cannot write and read back ' . $probe;
        }

        $ok = !in_array(false, array_column($checks, 'ok'), true);
        $this->json($ok ? 200 : 503, ['status' => $ok ? 'ok' : 'fail', 'checks' => $checks]);
    }
}
