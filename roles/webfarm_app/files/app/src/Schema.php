<?php
/* The app's tables, created when missing (idempotent). */

declare(strict_types=1);

namespace Webfarm;

final class Schema
{
    public const TABLES = [
        'webfarm_sessions' => 'CREATE TABLE webfarm_sessions (
            sid VARCHAR(128) CHARACTER SET ascii NOT NULL,
            data MEDIUMBLOB NOT NULL,
            updated INT UNSIGNED NOT NULL,
            PRIMARY KEY (sid),
            KEY updated (updated)
        ) ENGINE=InnoDB',
        'webfarm_rows' => 'CREATE TABLE webfarm_rows (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            node VARCHAR(64) NOT NULL,
            payload VARCHAR(255) NOT NULL,
            created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
            PRIMARY KEY (id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4',
    ];

    /** @return string[] the tables this call created */
    public static function ensure(\PDO $pdo): array
    {
        $created = [];
        $exists = $pdo->prepare('SELECT COUNT(*) FROM information_schema.tables'
            . ' WHERE table_schema = DATABASE() AND table_name = ?');
        foreach (self::TABLES as $name => $ddl) {
            $exists->execute([$name]);
            if ((int) $exists->fetchColumn() === 0) {
                $pdo->exec($ddl);
                $created[] = $name;
            }
        }
        return $created;
    }
}
