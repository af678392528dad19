<?php
/*
 * PHP sessions in the MySQL primary, like Drupal's sessions table: any node
 * reads what another node wrote. No locking (as in Drupal): the last write of
 * concurrent requests of one session wins.
 */

declare(strict_types=1);

namespace Webfarm;

final class DbSessionHandler implements \SessionHandlerInterface, \SessionUpdateTimestampHandlerInterface
{
    public const TABLE = 'webfarm_sessions';

    /** @var \Closure(): \PDO */
    private \Closure $connect;
    private ?\PDO $pdo = null;
    private int $lifetime;

    public function __construct(\Closure $connect, int $lifetime)
    {
        $this->connect = $connect;
        $this->lifetime = $lifetime;
    }

    private function db(): \PDO
    {
        return $this->pdo ??= ($this->connect)();
    }

    public function open(string $path, string $name): bool
    {
        return true;
    }

    public function close(): bool
    {
        return true;
    }

    public function read(string $id): string|false
    {
        $st = $this->db()->prepare('SELECT data FROM ' . self::TABLE . ' WHERE sid = ? AND updated >= ?');
        $st->execute([$id, time() - $this->lifetime]);
        $data = $st->fetchColumn();
        return $data === false ? '' : (string) $data;
    }

    public function write(string $id, string $data): bool
    {
        $st = $this->db()->prepare('INSERT INTO ' . self::TABLE . ' (sid, data, updated) VALUES (?, ?, ?)'
            . ' ON DUPLICATE KEY UPDATE data = VALUES(data), updated = VALUES(updated)');
        return $st->execute([$id, $data, time()]);
    }

    public function destroy(string $id): bool
    {
        return $this->db()->prepare('DELETE FROM ' . self::TABLE . ' WHERE sid = ?')->execute([$id]);
    }

    public function gc(int $max_lifetime): int|false
    {
        $st = $this->db()->prepare('DELETE FROM ' . self::TABLE . ' WHERE updated < ?');
        $st->execute([time() - $max_lifetime]);
        return $st->rowCount();
    }

    /* session.use_strict_mode: only ids this store knows are accepted. */
    public function validateId(string $id): bool
    {
        $st = $this->db()->prepare('SELECT 1 FROM ' . self::TABLE . ' WHERE sid = ? AND updated >= ?');
        $st->execute([$id, time() - $this->lifetime]);
        return $st->fetchColumn() !== false;
    }

    public function updateTimestamp(string $id, string $data): bool
    {
        return $this->db()->prepare('UPDATE ' . self::TABLE . ' SET updated = ? WHERE sid = ?')
            ->execute([time(), $id]);
    }
}
