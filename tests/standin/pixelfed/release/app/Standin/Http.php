<?php

// fedictl TEST STAND-IN for Pixelfed: NOT Pixelfed. See STANDIN-NOT-PIXELFED.txt.
//
// The web side, run by php-fpm through public/index.php (nginx: root public/, try_files to
// /index.php?$query_string, as upstream's documented site). Every request first checks what a
// Laravel/Pixelfed request needs — APP_KEY set, PostgreSQL and Redis reachable with the
// configured password — and answers 500 (and logs why in storage/logs/laravel.log) otherwise.

namespace App\Standin;

final class Http
{
    private string $clientIp = '';
    private string $scheme = 'http';

    public static function routeCachePath(): string
    {
        return App::path('bootstrap/cache/routes-v7.php'); // Laravel 11+'s file name
    }

    /** @return list<array{0: string, 1: string, 2: string}> [method, regex, handler] */
    public static function loadRoutes(): array
    {
        $cached = self::routeCachePath();
        if (is_file($cached)) {
            return require $cached;
        }
        return array_merge(require App::path('routes/web.php'), require App::path('routes/api.php'));
    }

    public static function handle(): void
    {
        $http = new self();
        $method = (string) ($_SERVER['REQUEST_METHOD'] ?? 'GET');
        $path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
        try {
            App::config();
            if (Release::BROKEN) {
                throw new StandinError('stand-in v' . App::version() . ' is broken on purpose');
            }
            App::requireKey();
            App::db();
            App::redis();
            App::applyConfigCache();
            $http->trustProxies();
            [$status, $type, $body] = $http->route($method, $path);
        } catch (StandinError|\PDOException|\RedisException $e) {
            App::log('error', "$method $path: " . $e->getMessage());
            $status = 500;
            $wantsJson = str_starts_with($path, '/api/') || str_contains((string) ($_SERVER['HTTP_ACCEPT'] ?? ''), 'json');
            [$type, $body] = $wantsJson
                ? ['application/json', '{"message":"Server Error"}']
                : ['text/html; charset=UTF-8', "<!DOCTYPE html>\n<title>Server Error</title>\n<p>500 | Server Error</p>\n"];
        }
        http_response_code($status);
        header("Content-Type: $type");
        header('X-Standin: fedictl test stand-in, not Pixelfed');
        // stand-in only: what TrustProxies made of the request, so tests can see it
        header('X-Standin-Client-Ip: ' . ($http->clientIp ?: (string) ($_SERVER['REMOTE_ADDR'] ?? '')));
        header('X-Standin-Scheme: ' . $http->scheme);
        echo $body;
    }

    // ---- TrustProxies (config/trustedproxy.php: TRUST_PROXIES) ---------------------------------

    private function trustProxies(): void
    {
        $remote = (string) ($_SERVER['REMOTE_ADDR'] ?? '');
        $this->clientIp = $remote;
        $this->scheme = (($_SERVER['HTTPS'] ?? '') !== '' && ($_SERVER['HTTPS'] ?? '') !== 'off') ? 'https' : 'http';
        $setting = App::get('trustedproxy.proxies');
        if ($setting === null || $setting === '' || $setting === false) {
            return; // since Pixelfed v0.12.8: no proxy is trusted unless TRUST_PROXIES says so
        }
        $proxies = ($setting === '*' || $setting === '**') ? null : array_map('trim', explode(',', (string) $setting));
        $trusted = fn (string $ip): bool => $proxies === null || self::ipIn($ip, $proxies);
        if ($remote === '' || !$trusted($remote)) {
            return;
        }
        $proto = strtolower(trim(explode(',', (string) ($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? ''))[0]));
        if ($proto === 'https' || $proto === 'http') {
            $this->scheme = $proto;
        }
        $chain = array_filter(array_map('trim', explode(',', (string) ($_SERVER['HTTP_X_FORWARDED_FOR'] ?? ''))));
        foreach (array_reverse($chain) as $hop) { // Symfony: the first untrusted hop from the right
            $this->clientIp = $hop;
            if (!$trusted($hop)) {
                break;
            }
        }
    }

    /** @param list<string> $list IPv4/IPv6 addresses or IPv4 CIDRs */
    private static function ipIn(string $ip, array $list): bool
    {
        foreach ($list as $entry) {
            if ($entry === $ip) {
                return true;
            }
            if (str_contains($entry, '/') && filter_var($ip, FILTER_VALIDATE_IP, FILTER_FLAG_IPV4)) {
                [$net, $bits] = explode('/', $entry, 2);
                $mask = $bits === '0' ? 0 : (~0 << (32 - (int) $bits)) & 0xFFFFFFFF;
                if ((ip2long($ip) & $mask) === (ip2long($net) & $mask)) {
                    return true;
                }
            }
        }
        return false;
    }

    // ---- routing ------------------------------------------------------------------------------

    /** @return array{0: int, 1: string, 2: string} */
    private function route(string $method, string $path): array
    {
        foreach (self::loadRoutes() as [$m, $regex, $handler]) {
            if (($m === $method || ($m === 'GET' && $method === 'HEAD')) && preg_match($regex, $path, $params)) {
                return $this->$handler(...array_values(array_filter($params, 'is_string', ARRAY_FILTER_USE_KEY)));
            }
        }
        return self::json(['error' => 'Not Found'], 404);
    }

    /** @return array{0: int, 1: string, 2: string} */
    private static function json(mixed $data, int $status = 200, string $type = 'application/json'): array
    {
        return [$status, $type, (string) json_encode($data, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)];
    }

    private static function url(string $path): string
    {
        return 'https://' . App::domain() . $path;
    }

    /** @return array<string, mixed>|null */
    private static function profile(string $username): ?array
    {
        $q = App::db()->prepare('SELECT p.id, p.username, p.name, u.id AS user_id FROM profiles p JOIN users u ON u.id = p.user_id WHERE lower(p.username) = lower(?)');
        $q->execute([$username]);
        return $q->fetch() ?: null;
    }

    // ---- handlers (named in routes/*.php) -----------------------------------------------------

    private function home(): array
    {
        return [200, 'text/html; charset=UTF-8', View::render('home', [
            'appName' => App::get('app.name') . ' (fedictl test stand-in, not Pixelfed)', 'version' => App::version(),
        ])];
    }

    private function nodeinfoWellKnown(): array
    {
        if (!App::get('federation.nodeinfo.enabled')) {
            return self::json(['error' => 'Not Found'], 404);
        }
        return self::json(['links' => [[
            'href' => self::url('/api/nodeinfo/2.0.json'),
            'rel' => 'http://nodeinfo.diaspora.software/ns/schema/2.0',
        ]]]);
    }

    private function nodeinfo(): array
    {
        if (!App::get('federation.nodeinfo.enabled')) {
            return self::json(['error' => 'Not Found'], 404);
        }
        $db = App::db();
        $users = (int) $db->query('SELECT count(*) FROM users')->fetchColumn();
        return self::json([
            'metadata' => [
                'nodeName' => App::get('app.name') . ' (fedictl test stand-in, not Pixelfed)',
                'software' => ['homepage' => 'https://fedictl.invalid/standin/pixelfed', 'repo' => 'https://fedictl.invalid/standin/pixelfed'],
                'config' => ['features' => ['timelines' => ['local' => true, 'network' => false], 'mobile_apis' => (bool) App::get('pixelfed.oauth_enabled')]],
            ],
            'protocols' => ['activitypub'],
            'services' => ['inbound' => [], 'outbound' => []],
            'software' => ['name' => 'pixelfed', 'version' => App::version()],
            'usage' => ['localPosts' => (int) $db->query('SELECT count(*) FROM media')->fetchColumn(), 'localComments' => 0,
                'users' => ['total' => $users, 'activeHalfyear' => $users, 'activeMonth' => $users]],
            'version' => '2.0',
            'openRegistrations' => (bool) App::get('pixelfed.open_registration'),
        ], 200, 'application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.0#"');
    }

    private function instance(): array
    {
        // the health route: it reads PostgreSQL and writes Redis, like Pixelfed's cached stats
        $db = App::db();
        App::redis()->incr(App::prefix() . 'standin:instance:hits');
        return self::json([
            'uri' => App::domain(),
            'title' => App::get('app.name') . ' (fedictl test stand-in, not Pixelfed)',
            'short_description' => (string) App::get('app.short_description'),
            'description' => 'fedictl test stand-in, not Pixelfed',
            'email' => (string) App::get('instance.email'),
            'version' => '3.5.3 (compatible; Pixelfed ' . App::version() . ')',
            'urls' => [],
            'stats' => ['user_count' => (int) $db->query('SELECT count(*) FROM users')->fetchColumn(),
                'status_count' => (int) $db->query('SELECT count(*) FROM media')->fetchColumn(), 'domain_count' => 0],
            'thumbnail' => self::url('/img/pixelfed-icon-color.png'),
            'languages' => ['en'],
            'registrations' => (bool) App::get('pixelfed.open_registration'),
            'approval_required' => false,
            'configuration' => ['media_attachments' => [
                'supported_mime_types' => explode(',', (string) App::get('pixelfed.media_types')),
                'image_size_limit' => (int) App::get('pixelfed.max_photo_size') * 1024,
            ]],
        ]);
    }

    private function webfinger(): array
    {
        $resource = (string) ($_GET['resource'] ?? '');
        if (!App::get('federation.webfinger.enabled') || !preg_match('/^acct:([^@]+)@(.+)$/', $resource, $m)) {
            return self::json(['error' => 'Not Found'], 404);
        }
        $p = strtolower($m[2]) === strtolower(App::domain()) ? self::profile($m[1]) : null;
        if ($p === null) {
            return self::json(['error' => 'Not Found'], 404);
        }
        $u = $p['username'];
        return self::json([
            'subject' => "acct:$u@" . App::domain(),
            'aliases' => [self::url("/$u"), self::url("/users/$u")],
            'links' => [
                ['rel' => 'http://webfinger.net/rel/profile-page', 'type' => 'text/html', 'href' => self::url("/$u")],
                ['rel' => 'self', 'type' => 'application/activity+json', 'href' => self::url("/users/$u")],
            ],
        ], 200, 'application/jrd+json; charset=utf-8');
    }

    private function user(string $username): array
    {
        $p = self::profile($username);
        if ($p === null) {
            return self::json(['error' => 'Not Found'], 404);
        }
        $accept = (string) ($_SERVER['HTTP_ACCEPT'] ?? '');
        $wantsAp = str_contains($accept, 'application/activity+json') || str_contains($accept, 'application/ld+json');
        if ($wantsAp && App::get('federation.activitypub.enabled')) {
            $id = self::url('/users/' . $p['username']);
            return self::json([
                '@context' => ['https://www.w3.org/ns/activitystreams', 'https://w3id.org/security/v1'],
                'id' => $id, 'type' => 'Person', 'preferredUsername' => $p['username'], 'name' => $p['name'],
                'url' => self::url('/' . $p['username']),
                'inbox' => "$id/inbox", 'outbox' => "$id/outbox", 'following' => "$id/following", 'followers' => "$id/followers",
                'endpoints' => ['sharedInbox' => self::url('/f/inbox')],
            ], 200, 'application/activity+json');
        }
        return [200, 'text/html; charset=UTF-8', View::render('profile', [
            'username' => $p['username'], 'name' => $p['name'], 'appName' => App::get('app.name'), 'version' => App::version(),
        ])];
    }

    private function instanceActor(): array
    {
        $actor = App::db()->query('SELECT public_key FROM instance_actors ORDER BY id LIMIT 1')->fetch();
        if (!App::get('federation.activitypub.enabled') || !$actor) {
            // upstream: 500 "Attempt to read property private_key on null" (pixelfed#5494)
            if (App::get('federation.activitypub.enabled')) {
                throw new StandinError('Attempt to read property "private_key" on null (no instance actor: run php artisan instance:actor)');
            }
            return self::json(['error' => 'Not Found'], 404);
        }
        return self::json([
            '@context' => ['https://www.w3.org/ns/activitystreams', 'https://w3id.org/security/v1'],
            'id' => self::url('/i/actor'), 'type' => 'Application', 'preferredUsername' => App::domain(),
            'inbox' => self::url('/i/actor/inbox'), 'outbox' => self::url('/i/actor/outbox'),
            'publicKey' => ['id' => self::url('/i/actor#main-key'), 'owner' => self::url('/i/actor'), 'publicKeyPem' => $actor['public_key']],
        ], 200, 'application/activity+json');
    }

    /** The user of `Authorization: Bearer TOKEN` (tokens from `php artisan standin:token`). */
    private static function bearerUser(): ?array
    {
        $auth = (string) ($_SERVER['HTTP_AUTHORIZATION'] ?? '');
        if (!preg_match('/^Bearer\s+([0-9a-f]{64})$/i', $auth, $m)) {
            return null;
        }
        $q = App::db()->prepare('SELECT u.id, u.username, p.id AS profile_id FROM oauth_access_tokens t JOIN users u ON u.id = t.user_id
            JOIN profiles p ON p.user_id = u.id WHERE t.id = ? AND NOT t.revoked AND (t.expires_at IS NULL OR t.expires_at > now())');
        $q->execute([hash('sha256', strtolower($m[1]))]);
        return $q->fetch() ?: null;
    }

    private function verifyCredentials(): array
    {
        $u = self::bearerUser();
        return $u === null ? self::json(['error' => 'Unauthenticated.'], 401)
            : self::json(['id' => (string) $u['profile_id'], 'username' => $u['username'], 'acct' => $u['username']]);
    }

    private function uploadMedia(): array
    {
        $u = self::bearerUser();
        if ($u === null) {
            return self::json(['error' => 'Unauthenticated.'], 401);
        }
        $file = $_FILES['file'] ?? null;
        if (!is_array($file) || ($file['error'] ?? UPLOAD_ERR_NO_FILE) !== UPLOAD_ERR_OK) {
            return self::json(['error' => 'The file field is required (upload error ' . ($file['error'] ?? 'none') . ').'], 422);
        }
        $mime = (string) (new \finfo(FILEINFO_MIME_TYPE))->file($file['tmp_name']);
        if (!in_array($mime, explode(',', (string) App::get('pixelfed.media_types')), true)) {
            return self::json(['error' => "The file must be a file of type: " . App::get('pixelfed.media_types') . '.'], 422);
        }
        if ($file['size'] > (int) App::get('pixelfed.max_photo_size') * 1024) {
            return self::json(['error' => 'The file may not be greater than ' . App::get('pixelfed.max_photo_size') . ' kilobytes.'], 422);
        }
        // Pixelfed's layout: storage/app/public/m/_v2/<profile id>/<hash>/<date>/<random>.<ext>
        $ext = ['image/jpeg' => 'jpg', 'image/png' => 'png', 'image/gif' => 'gif', 'image/webp' => 'webp'][$mime] ?? 'bin';
        $dir = sprintf('m/_v2/%d/%s/%s', $u['profile_id'], substr(hash('sha256', $u['username']), 0, 16), date('Y/m/d'));
        $base = bin2hex(random_bytes(10));
        $root = App::path('storage/app/public');
        if (!is_dir("$root/$dir") && !mkdir("$root/$dir", 0755, true)) {
            throw new StandinError("Cannot create $root/$dir");
        }
        if (!move_uploaded_file($file['tmp_name'], "$root/$dir/$base.$ext")) {
            throw new StandinError("Cannot store the upload in $root/$dir");
        }
        $thumb = null;
        $image = @imagecreatefromstring((string) file_get_contents("$root/$dir/$base.$ext")); // php-gd
        if ($image !== false) {
            imagejpeg(imagescale($image, min(640, imagesx($image))), "$root/$dir/{$base}_thumb.jpeg", 80);
            $thumb = "$dir/{$base}_thumb.jpeg";
        }
        $values = ['profile_id' => $u['profile_id'], 'media_path' => "$dir/$base.$ext", 'thumbnail_path' => $thumb,
            'mime' => $mime, 'size' => (int) $file['size'], 'sha256' => hash_file('sha256', "$root/$dir/$base.$ext")];
        $cols = Release::MEDIA_COLUMNS; // v0.14.4 writes sha256: it fails on v0.14.3's schema
        $db = App::db();
        $q = $db->prepare(sprintf('INSERT INTO media (%s, created_at, updated_at) VALUES (%s, now(), now()) RETURNING id',
            implode(', ', $cols), implode(', ', array_fill(0, count($cols), '?'))));
        $q->execute(array_map(fn ($c) => $values[$c], $cols));
        $id = (int) $q->fetchColumn();
        App::queuePush('mmo', ['job' => 'ImageOptimize', 'media_id' => $id]); // Horizon marks it processed
        App::log('info', "media $id stored for {$u['username']}: $dir/$base.$ext");
        return self::json([
            'id' => (string) $id, 'type' => 'image',
            'url' => self::url("/storage/$dir/$base.$ext"),
            'preview_url' => $thumb === null ? null : self::url("/storage/$thumb"),
            'remote_url' => null, 'text_url' => null, 'description' => null, 'blurhash' => null,
        ]);
    }
}
