<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. See STANDIN-NOT-PIXELFED.txt.
//
// `php artisan COMMAND`: the artisan commands a Pixelfed deployment runs, each doing the real
// thing on a tiny scale, with Laravel's/Pixelfed's messages and exit codes.

namespace App\Standin;

final class Console
{
    /** command => [options => takes a value?, description] */
    private const COMMANDS = [
        'key:generate' => [['force' => false, 'show' => false], 'Set the application key'],
        'migrate' => [['force' => false], 'Run the database migrations'],
        'migrate:status' => [['pending' => false], 'Show the status of each migration'],
        'config:cache' => [[], 'Create a cache file for faster configuration loading'],
        'config:clear' => [[], 'Remove the configuration cache file'],
        'route:cache' => [[], 'Create a route cache file for faster route registration'],
        'route:clear' => [[], 'Remove the route cache file'],
        'view:cache' => [[], "Compile all of the application's Blade templates"],
        'view:clear' => [[], 'Clear all compiled view files'],
        'optimize' => [[], 'Cache framework bootstrap, configuration, and metadata'],
        'optimize:clear' => [[], 'Remove the cached bootstrap files'],
        'storage:link' => [['force' => false], 'Create the symbolic links configured for the application'],
        'passport:keys' => [['force' => false, 'length' => true], 'Create the encryption keys for API authentication'],
        'instance:actor' => [[], 'Create instance actor'],
        'import:cities' => [[], 'Import cities to database'],
        'user:create' => [['name' => true, 'username' => true, 'email' => true, 'password' => true,
            'is_admin' => true, 'confirm_email' => true], 'Create a new user'],
        'horizon' => [['environment' => true], 'Start a master supervisor in the foreground'],
        'horizon:terminate' => [['wait' => false], 'Terminate the master supervisor so it can be restarted'],
        'horizon:status' => [[], 'Get the current status of Horizon'],
        'horizon:install' => [[], 'Install all of the Horizon resources'],
        'horizon:publish' => [[], 'Publish all of the Horizon resources'],
        'schedule:run' => [[], 'Run the scheduled commands'],
        'standin:token' => [[], 'STAND-IN ONLY: print a personal access token for USER'],
    ];

    /** @var array<string, string|bool> */
    private array $opt = [];
    /** @var list<string> */
    private array $args = [];

    public static function run(array $argv): int
    {
        $console = new self();
        try {
            return $console->dispatch(array_slice($argv, 1));
        } catch (StandinError $e) {
            App::log('error', $e->getMessage());
            self::error($e->getMessage());
            return 1;
        } catch (\PDOException $e) {
            App::log('error', 'SQL: ' . $e->getMessage());
            self::error('SQL: ' . $e->getMessage());
            return 1;
        }
    }

    private static function info(string $msg): void
    {
        fwrite(STDOUT, "\n   INFO  $msg\n\n");
    }

    private static function error(string $msg): void
    {
        fwrite(STDERR, "\n   ERROR  $msg\n\n");
    }

    private function dispatch(array $argv): int
    {
        $name = null;
        $rest = [];
        foreach ($argv as $a) {
            if ($name === null && $a !== '' && $a[0] !== '-') {
                $name = $a;
            } else {
                $rest[] = $a;
            }
        }
        if ($name === null) {
            if (in_array('--version', $rest, true) || in_array('-V', $rest, true)) {
                fwrite(STDOUT, 'Laravel Framework 13.0.0 (fedictl stand-in, not Laravel; Pixelfed stand-in ' . App::version() . ")\n");
                return 0;
            }
            $name = 'list';
        }
        if ($name === 'list') {
            fwrite(STDOUT, "Pixelfed " . App::version() . " (fedictl test stand-in, not Pixelfed)\n\nAvailable commands:\n");
            foreach (self::COMMANDS as $cmd => [, $desc]) {
                fwrite(STDOUT, sprintf("  %-20s %s\n", $cmd, $desc));
            }
            return 0;
        }
        if (!isset(self::COMMANDS[$name])) {
            self::error("Command \"$name\" is not defined.");
            return 1;
        }
        $known = self::COMMANDS[$name][0] + ['no-interaction' => false, 'n' => false, 'quiet' => false,
            'q' => false, 'no-ansi' => false, 'ansi' => false, 'verbose' => false, 'v' => false];
        for ($i = 0; $i < count($rest); $i++) {
            $a = $rest[$i];
            if (!str_starts_with($a, '-')) {
                $this->args[] = $a;
                continue;
            }
            $key = ltrim($a, '-');
            $value = true;
            if (str_contains($key, '=')) {
                [$key, $value] = explode('=', $key, 2);
            }
            if (!array_key_exists($key, $known)) {
                self::error("The \"--$key\" option does not exist.");
                return 1;
            }
            if ($known[$key] && $value === true) { // --name VALUE
                if (!isset($rest[$i + 1])) {
                    self::error("The \"--$key\" option requires a value.");
                    return 1;
                }
                $value = $rest[++$i];
            }
            $this->opt[$key] = $value;
        }
        $method = 'cmd' . str_replace([':', '-'], '', ucwords($name, ':-'));
        return (int) $this->$method();
    }

    /** Laravel's ConfirmableTrait: in production, destructive commands need --force. */
    private function confirmToProceed(): bool
    {
        if (App::get('app.env') !== 'production' || !empty($this->opt['force'])) {
            return true;
        }
        fwrite(STDOUT, "\n   WARN  Application In Production.\n\n");
        fwrite(STDOUT, "   Are you sure you want to run this command? (yes/no) [no]\n");
        self::info('Command cancelled.');
        return false;
    }

    // ---- key:generate -------------------------------------------------------------------------

    private function cmdKeyGenerate(): int
    {
        $key = 'base64:' . base64_encode(random_bytes(32)); // AES-256-CBC
        if (!empty($this->opt['show'])) {
            fwrite(STDOUT, $key . "\n");
            return 0;
        }
        // Laravel: an existing key is replaced only after confirmation (--force in production).
        $current = (string) App::get('app.key');
        if ($current !== '' && !$this->confirmToProceed()) {
            return 0;
        }
        $env = App::path('.env');
        $text = is_file($env) ? (string) file_get_contents($env) : '';
        $pattern = '/^APP_KEY=' . preg_quote(self::envValue('APP_KEY', $text), '/') . '$/m';
        if (!preg_match($pattern, $text)) {
            self::error('Unable to set application key. No APP_KEY variable was found in the .env file.');
            return 0;
        }
        file_put_contents($env, (string) preg_replace($pattern, 'APP_KEY=' . $key, $text, 1));
        self::info('Application key set successfully.');
        return 0;
    }

    private static function envValue(string $name, string $text): string
    {
        return preg_match('/^' . $name . '=(.*)$/m', $text, $m) ? $m[1] : '';
    }

    // ---- migrations ---------------------------------------------------------------------------

    /** @return array<string, string> name => file */
    private function migrationFiles(): array
    {
        $files = [];
        foreach (glob(App::path('database/migrations/*.php')) ?: [] as $f) {
            $files[basename($f, '.php')] = $f;
        }
        ksort($files);
        return $files;
    }

    private function ensureMigrationsTable(\PDO $db): void
    {
        $db->exec('CREATE TABLE IF NOT EXISTS migrations (id serial PRIMARY KEY, migration varchar(255) NOT NULL, batch integer NOT NULL)');
    }

    /** @return list<string> */
    private function ran(\PDO $db): array
    {
        return $db->query('SELECT migration FROM migrations ORDER BY id')->fetchAll(\PDO::FETCH_COLUMN);
    }

    private function cmdMigrate(): int
    {
        if (!$this->confirmToProceed()) {
            return 1;
        }
        $db = App::db();
        $db->exec('SELECT pg_advisory_lock(42013)'); // one migrator at a time
        try {
            $this->ensureMigrationsTable($db);
            $ran = $this->ran($db);
            $pending = array_diff_key($this->migrationFiles(), array_flip($ran));
            if (!$pending) {
                self::info('Nothing to migrate.');
                return 0;
            }
            self::info('Running migrations.');
            $batch = (int) $db->query('SELECT coalesce(max(batch), 0) + 1 FROM migrations')->fetchColumn();
            foreach ($pending as $name => $file) {
                $start = microtime(true);
                $migration = require $file;
                $db->beginTransaction();
                try {
                    $migration->up($db);
                    $db->prepare('INSERT INTO migrations (migration, batch) VALUES (?, ?)')->execute([$name, $batch]);
                    $db->commit();
                } catch (\Throwable $e) {
                    $db->rollBack();
                    fwrite(STDOUT, sprintf("  %s %s FAIL\n", $name, str_repeat('.', max(1, 60 - strlen($name)))));
                    throw new StandinError("Migration $name failed: " . $e->getMessage());
                }
                fwrite(STDOUT, sprintf("  %s %s %.2fms DONE\n", $name, str_repeat('.', max(1, 60 - strlen($name))), (microtime(true) - $start) * 1000));
                App::log('info', "migrated $name (batch $batch)");
            }
            fwrite(STDOUT, "\n");
        } finally {
            $db->exec('SELECT pg_advisory_unlock(42013)');
        }
        return 0;
    }

    private function cmdMigrateStatus(): int
    {
        $db = App::db();
        $exists = $db->query("SELECT to_regclass('migrations') IS NOT NULL")->fetchColumn();
        if (!$exists) {
            self::error('Migration table not found.');
            return 1;
        }
        $ran = $this->ran($db);
        $pending = 0;
        fwrite(STDOUT, "\n  Migration name " . str_repeat('.', 50) . " Batch / Status\n");
        foreach (array_keys($this->migrationFiles()) as $name) {
            $done = in_array($name, $ran, true);
            $pending += $done ? 0 : 1;
            if (!empty($this->opt['pending']) && $done) {
                continue;
            }
            fwrite(STDOUT, sprintf("  %s %s %s\n", $name, str_repeat('.', max(1, 60 - strlen($name))), $done ? 'Ran' : 'Pending'));
        }
        if (!empty($this->opt['pending']) && $pending === 0) {
            self::info('No pending migrations.');
        }
        fwrite(STDOUT, "\n");
        return 0;
    }

    // ---- caches -------------------------------------------------------------------------------

    private function cmdConfigCache(): int
    {
        $this->cmdConfigClear(false);
        $config = App::freshConfig(); // reads .env now; at run time it will not be read
        $file = App::configCachePath();
        file_put_contents($file . '.tmp', '<?php return ' . var_export($config, true) . ';' . PHP_EOL);
        rename($file . '.tmp', $file);
        self::info('Configuration cached successfully.');
        return 0;
    }

    private function cmdConfigClear(bool $say = true): int
    {
        @unlink(App::configCachePath());
        if ($say) {
            self::info('Configuration cache cleared successfully.');
        }
        return 0;
    }

    private function cmdRouteCache(): int
    {
        $file = Http::routeCachePath();
        @unlink($file);
        $routes = Http::loadRoutes();
        file_put_contents($file . '.tmp', '<?php return ' . var_export($routes, true) . ';' . PHP_EOL);
        rename($file . '.tmp', $file);
        self::info('Routes cached successfully.');
        return 0;
    }

    private function cmdRouteClear(): int
    {
        @unlink(Http::routeCachePath());
        self::info('Route cache cleared successfully.');
        return 0;
    }

    private function cmdViewCache(): int
    {
        $this->cmdViewClear(false);
        foreach (glob(App::path('resources/views/*.blade.php')) ?: [] as $view) {
            View::compile($view);
        }
        self::info('Blade templates cached successfully.');
        return 0;
    }

    private function cmdViewClear(bool $say = true): int
    {
        foreach (glob(App::path('storage/framework/views/*.php')) ?: [] as $f) {
            unlink($f);
        }
        if ($say) {
            self::info('Compiled views cleared successfully.');
        }
        return 0;
    }

    private function cmdOptimize(): int
    {
        return $this->cmdConfigCache() ?: $this->cmdRouteCache() ?: $this->cmdViewCache();
    }

    private function cmdOptimizeClear(): int
    {
        return $this->cmdConfigClear() ?: $this->cmdRouteClear() ?: $this->cmdViewClear();
    }

    // ---- storage and keys ---------------------------------------------------------------------

    private function cmdStorageLink(): int
    {
        $link = App::path('public/storage');
        $target = App::path('storage/app/public');
        if (file_exists($link) || is_link($link)) {
            if (empty($this->opt['force'])) {
                self::error('The [public/storage] link already exists.');
                return 0;
            }
            unlink($link);
        }
        symlink($target, $link); // absolute, as Laravel makes it without --relative
        self::info('The [public/storage] link has been connected to [storage/app/public].');
        return 0;
    }

    private function cmdPassportKeys(): int
    {
        $private = App::path('storage/oauth-private.key');
        $public = App::path('storage/oauth-public.key');
        if ((file_exists($private) || file_exists($public)) && empty($this->opt['force'])) {
            self::error('Encryption keys already exist. Use the --force option to overwrite them.');
            return 1;
        }
        $bits = (int) ($this->opt['length'] ?? 4096);
        $key = openssl_pkey_new(['private_key_bits' => $bits, 'private_key_type' => OPENSSL_KEYTYPE_RSA]);
        if ($key === false || !openssl_pkey_export($key, $pem)) {
            throw new StandinError('openssl could not make an RSA key: ' . openssl_error_string());
        }
        // Passport: private 0600, public 0660
        file_put_contents($private, $pem);
        chmod($private, 0600);
        file_put_contents($public, openssl_pkey_get_details($key)['key']);
        chmod($public, 0660);
        self::info('Encryption keys generated successfully.');
        return 0;
    }

    // ---- Pixelfed's own commands --------------------------------------------------------------

    private function cmdInstanceActor(): int
    {
        $db = App::db();
        if ($db->query('SELECT count(*) FROM instance_actors')->fetchColumn() > 0) {
            fwrite(STDOUT, "Existing instance actor identified.\nNo further action is required.\n");
            return 0;
        }
        $key = openssl_pkey_new(['private_key_bits' => 2048, 'private_key_type' => OPENSSL_KEYTYPE_RSA]);
        openssl_pkey_export($key, $pem);
        $db->prepare('INSERT INTO instance_actors (private_key, public_key, created_at, updated_at) VALUES (?, ?, now(), now())')
            ->execute([$pem, openssl_pkey_get_details($key)['key']]);
        App::log('info', 'instance actor created');
        fwrite(STDOUT, "Instance actor succesfully generated. You do not need to run this command again.\n");
        return 0;
    }

    private function cmdImportCities(): int
    {
        $path = App::path('storage/app/cities.json'); // upstream: storage_path('app/cities.json')
        if (!is_file($path)) {
            self::error("File not found: $path");
            return 1;
        }
        $cities = json_decode((string) file_get_contents($path), true);
        $db = App::db();
        if ((int) $db->query('SELECT count(*) FROM places')->fetchColumn() >= count($cities)) {
            fwrite(STDOUT, "Cities already imported, aborting operation...\n");
            return 0;
        }
        $db->beginTransaction();
        $db->exec('DELETE FROM places');
        $insert = $db->prepare('INSERT INTO places (slug, name, country, lat, long, created_at, updated_at) VALUES (?, ?, ?, ?, ?, now(), now())');
        foreach ($cities as $c) {
            $insert->execute([strtolower(str_replace(' ', '-', $c['name'])), $c['name'], $c['country'], $c['lat'], $c['lng']]);
        }
        $db->commit();
        fwrite(STDOUT, sprintf("Found %d cities to insert ...\nSuccessfully imported %d entries!\n", count($cities), count($cities)));
        return 0;
    }

    private function cmdUserCreate(): int
    {
        $o = $this->opt;
        foreach (['name', 'username', 'email', 'password'] as $k) {
            if (!isset($o[$k]) || $o[$k] === true || $o[$k] === '') {
                // upstream then asks interactively; without a terminal nothing can be answered
                self::error("user:create needs --$k (the stand-in has no interactive mode)");
                return 1;
            }
        }
        $db = App::db();
        $db->beginTransaction();
        // upstream's non-interactive path has no duplicate check: the unique index fails it
        $db->prepare('INSERT INTO users (name, username, email, password, is_admin, email_verified_at, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ' . (($o['confirm_email'] ?? '') ? 'now()' : 'NULL') . ', now(), now())')
            ->execute([$o['name'], $o['username'], $o['email'], password_hash((string) $o['password'], PASSWORD_BCRYPT),
                ($o['is_admin'] ?? '') === 'true' ? 'true' : 'false']); // upstream: $o['is_admin'] == 'true'
        $uid = (int) $db->lastInsertId();
        $db->prepare('INSERT INTO profiles (user_id, username, name, created_at, updated_at) VALUES (?, ?, ?, now(), now())')
            ->execute([$uid, $o['username'], $o['name']]);
        $db->commit();
        App::log('info', "user {$o['username']} created");
        fwrite(STDOUT, "Creating account...\nCreated new user!\n");
        return 0;
    }

    private function cmdStandinToken(): int
    {
        $username = $this->args[0] ?? '';
        if ($username === '') {
            self::error('usage: php artisan standin:token USERNAME');
            return 1;
        }
        if (!is_readable(App::path('storage/oauth-private.key'))) { // Passport signs tokens with it
            throw new StandinError('Key path "file://' . App::path('storage/oauth-private.key') . '" does not exist or is not readable');
        }
        $db = App::db();
        $q = $db->prepare('SELECT id FROM users WHERE username = ?');
        $q->execute([$username]);
        $uid = $q->fetchColumn();
        if ($uid === false) {
            self::error("No user named $username.");
            return 1;
        }
        $token = bin2hex(random_bytes(32));
        $db->prepare("INSERT INTO oauth_access_tokens (id, user_id, name, created_at, updated_at, expires_at)
            VALUES (?, ?, 'standin', now(), now(), now() + interval '365 days')")
            ->execute([hash('sha256', $token), $uid]);
        fwrite(STDOUT, $token . "\n");
        return 0;
    }

    // ---- Horizon and the scheduler ------------------------------------------------------------

    private function cmdHorizon(): int
    {
        return (new Horizon())->run();
    }

    private function cmdHorizonTerminate(): int
    {
        $r = App::redis();
        // Horizon: remember the time (the masters exit when they see it), signal the local masters
        $r->set(App::prefix() . 'horizon:terminate', (string) microtime(true));
        foreach ($r->sMembers(App::prefix() . 'horizon:masters') ?: [] as $name) {
            $master = json_decode((string) $r->get(App::prefix() . "horizon:master:$name"), true);
            if (is_array($master) && $master['host'] === gethostname() && function_exists('posix_kill')) {
                fwrite(STDOUT, "Sending TERM signal to processes.\n");
                @posix_kill((int) $master['pid'], SIGTERM);
            }
        }
        self::info('Sending TERM signal to processes.');
        return 0;
    }

    private function cmdHorizonStatus(): int
    {
        $r = App::redis();
        $running = false;
        foreach ($r->sMembers(App::prefix() . 'horizon:masters') ?: [] as $name) {
            $master = json_decode((string) $r->get(App::prefix() . "horizon:master:$name"), true);
            if (is_array($master) && $master['status'] === 'running') {
                $running = true;
            }
        }
        if ($running) {
            self::info('Horizon is running.');
            return 0;
        }
        self::error('Horizon is inactive.');
        return 1;
    }

    private function cmdHorizonInstall(): int
    {
        self::info('Horizon scaffolding installed successfully. (stand-in: nothing to install)');
        return 0;
    }

    private function cmdHorizonPublish(): int
    {
        self::info('Publishing [horizon-assets] assets. (stand-in: nothing to publish)');
        return 0;
    }

    private function cmdScheduleRun(): int
    {
        // Pixelfed's Kernel: horizon:snapshot and story:gc every five minutes, media:gc hourly...
        $minute = (int) date('i');
        $due = ['horizon:snapshot' => $minute % 5 === 0, 'story:gc' => $minute % 5 === 0, 'media:gc' => $minute === 5];
        $r = App::redis();
        $r->set(App::prefix() . 'standin:schedule:last_run', date('c'));
        $ran = 0;
        foreach ($due as $cmd => $isDue) {
            if ($isDue) {
                fwrite(STDOUT, sprintf("  %s Running ['artisan' %s] ... DONE\n", date('Y-m-d H:i:s'), $cmd));
                $ran++;
            }
        }
        if ($ran === 0) {
            self::info('No scheduled commands are ready to run.');
        }
        return 0;
    }
}
