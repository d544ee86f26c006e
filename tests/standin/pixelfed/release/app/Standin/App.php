<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. See STANDIN-NOT-PIXELFED.txt.
//
// The little "framework" every entry point shares: .env and config/ loading with Laravel's
// rules (a cached bootstrap/cache/config.php wins and .env is then NOT read), the log, and the
// PostgreSQL (PDO pgsql) and Redis (phpredis) connections.

namespace App\Standin;

final class App
{
    public static string $base = '';
    /** @var array<string, mixed>|null */
    private static ?array $config = null;
    public static bool $configCached = false;
    private static ?\PDO $pdo = null;
    private static ?\Redis $redis = null;

    public static function boot(string $base): void
    {
        self::$base = rtrim($base, '/');
        date_default_timezone_set('UTC'); // Pixelfed forces UTC too
    }

    public static function path(string $rel = ''): string
    {
        return $rel === '' ? self::$base : self::$base . '/' . ltrim($rel, '/');
    }

    // ---- environment and configuration -------------------------------------------------------

    /** Laravel (vlucas/phpdotenv, immutable): read .env; variables already set win. */
    public static function loadDotenv(): void
    {
        $file = self::path('.env');
        if (!is_file($file)) {
            return;
        }
        foreach (self::parseDotenv((string) file_get_contents($file)) as $name => $value) {
            if (getenv($name) !== false || array_key_exists($name, $_ENV)) {
                continue;
            }
            $_ENV[$name] = $value;
            $_SERVER[$name] = $value;
        }
    }

    /** @return array<string, string> */
    public static function parseDotenv(string $text): array
    {
        $vars = [];
        foreach (preg_split('/\r\n|\n|\r/', $text) ?: [] as $line) {
            $line = trim($line);
            if ($line === '' || $line[0] === '#') {
                continue;
            }
            if (str_starts_with($line, 'export ')) {
                $line = ltrim(substr($line, 7));
            }
            if (!preg_match('/^([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$/', $line, $m)) {
                continue;
            }
            [$name, $raw] = [$m[1], $m[2]];
            if ($raw !== '' && $raw[0] === "'") { // single quotes: literal
                $end = strpos($raw, "'", 1);
                $value = substr($raw, 1, $end === false ? null : $end - 1);
            } elseif ($raw !== '' && $raw[0] === '"') { // double quotes: escapes, ${VAR}
                preg_match('/^"((?:[^"\\\\]|\\\\.)*)"/', $raw, $q);
                $value = strtr($q[1] ?? substr($raw, 1), ['\\n' => "\n", '\\"' => '"', '\\\\' => '\\', '\\$' => '$']);
                $value = self::interpolate($value, $vars);
            } else { // unquoted: up to " #"
                $value = self::interpolate(trim((string) preg_replace('/\s+#.*$/', '', $raw)), $vars);
            }
            $vars[$name] = $value;
        }
        return $vars;
    }

    /** @param array<string, string> $vars */
    private static function interpolate(string $value, array $vars): string
    {
        return (string) preg_replace_callback('/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/', function ($m) use ($vars) {
            $env = getenv($m[1]);
            return $env !== false ? $env : ($vars[$m[1]] ?? '');
        }, $value);
    }

    /** Laravel's env(): true/false/null/empty keywords, surrounding quotes removed. */
    public static function env(string $key, mixed $default = null): mixed
    {
        $value = $_ENV[$key] ?? $_SERVER[$key] ?? getenv($key);
        if ($value === false || $value === null || is_array($value)) {
            return $default;
        }
        switch (strtolower((string) $value)) {
            case 'true':
            case '(true)':
                return true;
            case 'false':
            case '(false)':
                return false;
            case 'empty':
            case '(empty)':
                return '';
            case 'null':
            case '(null)':
                return null;
        }
        if (preg_match('/\A([\'"])(.*)\1\z/s', (string) $value, $m)) {
            return $m[2];
        }
        return $value;
    }

    public static function configCachePath(): string
    {
        return self::path('bootstrap/cache/config.php');
    }

    /** Every config/*.php, read now (loads .env first). What config:cache writes. */
    public static function freshConfig(): array
    {
        self::loadDotenv();
        $config = [];
        $files = glob(self::path('config/*.php')) ?: [];
        sort($files);
        foreach ($files as $file) {
            $config[basename($file, '.php')] = require $file;
        }
        return $config;
    }

    /** @return array<string, mixed> */
    public static function config(): array
    {
        if (self::$config === null) {
            $cached = self::configCachePath();
            if (is_file($cached)) { // Laravel: a cached configuration means .env is never read
                self::$config = require $cached;
                self::$configCached = true;
            } else {
                self::$config = self::freshConfig();
            }
        }
        return self::$config;
    }

    public static function get(string $key, mixed $default = null): mixed
    {
        $node = self::config();
        foreach (explode('.', $key) as $part) {
            if (!is_array($node) || !array_key_exists($part, $node)) {
                return $default;
            }
            $node = $node[$part];
        }
        return $node;
    }

    public static function set(string $key, mixed $value): void
    {
        self::config();
        $node = &self::$config;
        foreach (explode('.', $key) as $part) {
            if (!isset($node[$part]) || !is_array($node[$part])) {
                $node[$part] = $node[$part] ?? [];
            }
            $node = &$node[$part];
        }
        $node = $value;
    }

    /**
     * Pixelfed's ConfigCacheService: with ENABLE_CONFIG_CACHE (config('instance.enable_cc'),
     * default true) rows of the `config_cache` table (k, v) override these config keys.
     */
    public const CONFIG_CACHE_KEYS = [
        'app.name', 'app.short_description', 'pixelfed.open_registration',
        'pixelfed.enforce_email_verification', 'pixelfed.max_photo_size', 'pixelfed.oauth_enabled',
        'federation.activitypub.enabled', 'instance.stories.enabled',
    ];

    public static function applyConfigCache(): void
    {
        if (!self::get('instance.enable_cc')) {
            return;
        }
        foreach (self::db()->query('SELECT k, v FROM config_cache') ?: [] as $row) {
            if (in_array($row['k'], self::CONFIG_CACHE_KEYS, true)) {
                $v = $row['v'];
                self::set($row['k'], $v === 'true' ? true : ($v === 'false' ? false : $v));
            }
        }
    }

    public static function version(): string
    {
        return (string) self::get('pixelfed.version');
    }

    public static function domain(): string
    {
        return (string) (self::get('pixelfed.domain.app') ?: parse_url((string) self::get('app.url'), PHP_URL_HOST));
    }

    public static function requireKey(): void
    {
        // Laravel's MissingAppKeyException message
        if ((string) self::get('app.key') === '') {
            throw new StandinError('No application encryption key has been specified.');
        }
    }

    // ---- log ----------------------------------------------------------------------------------

    /** A Laravel-shaped line in storage/logs/laravel.log (LOG_CHANNEL=stack/single). */
    public static function log(string $level, string $message): void
    {
        $env = (string) (self::$config['app']['env'] ?? 'production');
        $line = sprintf("[%s] %s.%s: [stand-in pixelfed] %s\n", date('Y-m-d H:i:s'), $env, strtoupper($level), $message);
        @file_put_contents(self::path('storage/logs/laravel.log'), $line, FILE_APPEND | LOCK_EX);
    }

    // ---- PostgreSQL and Redis -----------------------------------------------------------------

    public static function db(): \PDO
    {
        if (self::$pdo !== null) {
            return self::$pdo;
        }
        $name = (string) self::get('database.default');
        $c = self::get("database.connections.$name");
        if ($name !== 'pgsql' || !is_array($c)) {
            throw new StandinError("DB_CONNECTION=$name: the stand-in speaks PostgreSQL only (set DB_CONNECTION=pgsql)");
        }
        $dsn = sprintf('pgsql:host=%s;port=%s;dbname=%s', $c['host'], $c['port'], $c['database']);
        try {
            self::$pdo = new \PDO($dsn, (string) $c['username'], (string) $c['password'], [
                \PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION,
                \PDO::ATTR_DEFAULT_FETCH_MODE => \PDO::FETCH_ASSOC,
                \PDO::ATTR_TIMEOUT => 5,
            ]);
        } catch (\PDOException $e) {
            throw new StandinError(sprintf('Cannot connect to PostgreSQL at %s:%s (database %s, user %s): %s',
                $c['host'], $c['port'], $c['database'], $c['username'], $e->getMessage()));
        }
        return self::$pdo;
    }

    public static function redis(): \Redis
    {
        if (self::$redis !== null) {
            return self::$redis;
        }
        $c = (array) self::get('database.redis.default');
        $where = sprintf('%s:%s (database %s)', $c['host'], $c['port'], $c['database']);
        try {
            $r = new \Redis();
            if (!$r->connect((string) $c['host'], (int) $c['port'], 5.0)) {
                throw new StandinError("Cannot connect to Redis at $where");
            }
            $password = $c['password'];
            if ($password !== null && $password !== '') {
                try {
                    $ok = $r->auth((string) $password);
                } catch (\RedisException $e) { // phpredis 6 throws WRONGPASS
                    $ok = false;
                }
                if (!$ok) {
                    throw new StandinError("Redis at $where refused the password (REDIS_PASSWORD)");
                }
            }
            if (!$r->select((int) $c['database'])) {
                throw new StandinError("Redis at $where: SELECT {$c['database']} failed");
            }
            $r->ping();
        } catch (\RedisException $e) {
            throw new StandinError("Redis at $where: " . $e->getMessage());
        }
        return self::$redis = $r;
    }

    public static function prefix(): string
    {
        return (string) self::get('database.redis.options.prefix', '');
    }

    public static function queuePush(string $queue, array $job): void
    {
        self::redis()->rPush(self::prefix() . 'queues:' . $queue, json_encode($job));
    }
}
