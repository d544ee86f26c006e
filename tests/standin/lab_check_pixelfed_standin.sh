#!/usr/bin/env bash
# Check the stand-in Pixelfed releases on a real Debian 13 lab host, the way upstream's
# bare-metal guide installs Pixelfed and a role would upgrade and roll it back.
#
#   tests/standin/lab_check_pixelfed_standin.sh HOST     (from the repository, as root; HOST must
#                                                         be a running `fedictl lab` host, pf-*)
#
# Builds the archives, copies them with this script to HOST and runs it there (--on-host):
# installs tests/standin/pixelfed/debian-packages.txt plus postgresql, redis-server (requirepass,
# database 4) and nginx; checks the checksums; lays out /srv/pixelfed/releases/<release> with a
# shared .env and storage/ and a `current` link; `composer install --no-dev` offline with Debian's
# composer; a php-fpm pool and upstream's nginx site (self-signed certificate); the first-run
# artisan commands; Horizon under systemd; the web API, an upload served by nginx; the upgrade to
# v0.14.4 (its code fails before `migrate`), the rollback to v0.14.3 on the newer schema, the
# broken v0.14.5 and the way back; TRUST_PROXIES, the config cache, and the refusals (no APP_KEY,
# wrong Redis password, PostgreSQL down). Ends with "N passed, N failed"; exit 1 when a check
# failed. The host is left as it is: stop it with `fedictl lab down HOST`.
set -uo pipefail

if [ "${1:-}" != --on-host ]; then
  host=${1:?usage: $0 LAB_HOST}
  here=$(cd "$(dirname "$0")" && pwd)
  repo=$(cd "$here/../.." && pwd)
  fedictl=${FEDICTL:-$repo/.venv/bin/fedictl}
  python=${PYTHON:-$repo/.venv/bin/python}
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  "$python" "$here/build_pixelfed_standin.py" --out "$out" all >/dev/null || exit 1
  cp "$here/lab_check_pixelfed_standin.sh" "$here/pixelfed/debian-packages.txt" "$out/"
  tar -C "$out" -c . | "$fedictl" lab ssh "$host" -- 'rm -rf /root/pfstandin && mkdir -p /root/pfstandin && tar -C /root/pfstandin -x' || exit 1
  exec "$fedictl" lab ssh "$host" -- 'bash /root/pfstandin/lab_check_pixelfed_standin.sh --on-host'
fi

# ---- on the lab host (root) ----
A=/root/pfstandin
P=/srv/pixelfed
DOMAIN=pics.standin.test
REDIS_PASS='r3dis-Pass#1'
DB_PASS='pg-Pass_1x'
ADMIN_PASS='admin-Pass 1$x'
passed=0; failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
artisan() { (cd $P/current && sudo -u pixelfed php artisan "$@"); }
api() { local path=$1; shift; curl -sk -m 30 --resolve "$DOMAIN:443:127.0.0.1" "$@" "https://$DOMAIN$path"; }
code() { api "$1" -o /dev/null -w '%{http_code}' "${@:2}"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
version() { api /api/v1/instance | json 'd["version"]' 2>/dev/null; }
log_has() { grep -F -- "$1" $P/shared/storage/logs/laravel.log >/dev/null; }
psql_pf() { sudo -u postgres psql -XAtq -d pixelfed -c "$1"; }
set_env() { sed -i "s|^$1=.*|$1=$2|" $P/shared/.env; }
unpack() { # unpack RELEASE into releases/, link the shared .env and storage, composer install
  local rel=$1 dir=$P/releases/$1
  rm -rf "$dir" && sudo -u pixelfed mkdir -p "$dir" &&
    sudo -u pixelfed tar -C "$dir" --strip-components=1 -xz <"$A/pixelfed-standin-$rel.tar.gz" &&
    sudo -u pixelfed rm -rf "$dir/storage" && sudo -u pixelfed ln -s $P/shared/storage "$dir/storage" &&
    sudo -u pixelfed ln -s $P/shared/.env "$dir/.env" &&
    (cd "$dir" && sudo -H -u pixelfed composer install --no-dev --no-interaction --optimize-autoloader >/tmp/composer-$rel.log 2>&1)
}
switch() { sudo -u pixelfed ln -sfn "releases/$1" $P/current.new && mv -T $P/current.new $P/current && systemctl reload php8.4-fpm; }
recache() { artisan config:cache >/dev/null && systemctl reload php8.4-fpm; } # opcache: see README
horizon_pid() { systemctl show -p MainPID --value pixelfed-horizon; }
horizon_running() { for _ in $(seq 40); do artisan horizon:status >/dev/null 2>&1 && return 0; sleep 0.5; done; return 1; }

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends $(cat $A/debian-packages.txt) \
  postgresql redis-server nginx curl sudo openssl python3 >/tmp/apt.log 2>&1
check "apt-get install debian-packages.txt + postgresql redis-server nginx" test $? -eq 0
echo "$(php -v | head -1), $(composer --version 2>/dev/null | head -1), PostgreSQL $(sudo -u postgres psql -XAtc 'show server_version'), $(redis-server --version | cut -d' ' -f3), $(nginx -v 2>&1)"
check "sha256sum -c of every archive" bash -c "cd $A && sha256sum -c --quiet ./*.tar.gz.sha256"
check "each archive has one top directory pixelfed-<release>/" bash -c "for a in $A/*.tar.gz; do r=\$(basename \$a .tar.gz); r=\${r#pixelfed-standin-}; test \"\$(tar tzf \$a | cut -d/ -f1 | sort -u)\" = pixelfed-\$r || exit 1; done"

lint() { local d; d=$(mktemp -d) && tar -C "$d" -xzf "$1" && find "$d" -name '*.php' -o -name artisan -type f | while read -r f; do php -l "$f" >/dev/null || echo "$f"; done | grep -q . && return 1; rm -rf "$d"; }
for a in $A/*.tar.gz; do check "php -l of every PHP file in $(basename "$a")" lint "$a"; done
envtest() { # the .env parser against phpdotenv's rules
  local d; d=$(mktemp -d) && tar -C "$d" -xzf $A/pixelfed-standin-v0.14.4.tar.gz || return 1
  cat >"$d/in.env" <<'EOF'
A=plain # comment
B="double ${A} \"q\""
C='single ${A}'
export D=x
#E=no
EOF
  php -r 'require $argv[1]; echo json_encode(App\Standin\App::parseDotenv(file_get_contents($argv[2])));' -- \
    "$d/pixelfed-v0.14.4/app/Standin/App.php" "$d/in.env" >"$d/out" &&
    python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"A": "plain", "B": "double plain \"q\"", "C": "single ${A}", "D": "x"}' "$d/out"
}
check ".env parser: quotes, escapes, \${VAR}, comments, export" envtest

echo "== infrastructure (fresh every run)"
systemctl stop pixelfed-horizon 2>/dev/null; systemctl reset-failed pixelfed-horizon 2>/dev/null
grep -q '^requirepass' /etc/redis/redis.conf || echo "requirepass $REDIS_PASS" >>/etc/redis/redis.conf
systemctl restart redis-server
redis-cli -a "$REDIS_PASS" --no-auth-warning -n 4 flushdb >/dev/null
systemctl start postgresql
sudo -u postgres PGOPTIONS='-c client_min_messages=warning' psql -Xq -c 'DROP DATABASE IF EXISTS pixelfed' -c 'DROP ROLE IF EXISTS pixelfed'
sudo -u postgres psql -Xq -c "CREATE ROLE pixelfed LOGIN PASSWORD '$DB_PASS'"
sudo -u postgres createdb -O pixelfed -E UTF8 -T template0 pixelfed
id pixelfed >/dev/null 2>&1 || useradd -rU -m -d /home/pixelfed -s /bin/bash pixelfed
rm -rf $P && mkdir -p $P && chown pixelfed:pixelfed $P && chmod 755 $P
sudo -u pixelfed mkdir -p $P/releases $P/shared

echo "== v0.14.3: install"
sudo -u pixelfed tar -C $P/shared --strip-components=1 -xz pixelfed-v0.14.3/storage <$A/pixelfed-standin-v0.14.3.tar.gz
unpack v0.14.3
check "composer install --no-dev --optimize-autoloader (Debian's composer, offline)" grep -q 'Generating optimized autoload files' /tmp/composer-v0.14.3.log
check "... without a lock-file warning" bash -c "! grep -qi 'not up to date' /tmp/composer-v0.14.3.log"
sudo -u pixelfed cp $P/releases/v0.14.3/.env.example $P/shared/.env.new && mv $P/shared/.env.new $P/shared/.env && chmod 640 $P/shared/.env
set_env APP_NAME '"Lab Pics"'; set_env APP_URL "https://$DOMAIN"; set_env APP_DOMAIN "$DOMAIN"
set_env ADMIN_DOMAIN "$DOMAIN"; set_env SESSION_DOMAIN "$DOMAIN"; set_env TRUST_PROXIES 127.0.0.1
set_env DB_CONNECTION pgsql; set_env DB_PORT 5432; set_env DB_PASSWORD "$DB_PASS"
set_env REDIS_CLIENT phpredis; set_env REDIS_PASSWORD "$REDIS_PASS"; set_env REDIS_DATABASE 4
set_env ACTIVITY_PUB true; set_env AP_INBOX true; set_env AP_SHAREDINBOX true
sudo -u pixelfed ln -sfn releases/v0.14.3 $P/current

cat >/etc/php/8.4/fpm/pool.d/pixelfed.conf <<EOF
[pixelfed]
user = pixelfed
group = pixelfed
listen = /run/php/php8.4-fpm-pixelfed.sock
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = dynamic
pm.max_children = 8
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
php_admin_value[post_max_size] = 20M
php_admin_value[upload_max_filesize] = 15M
php_admin_value[max_execution_time] = 600
EOF
systemctl restart php8.4-fpm
mkdir -p /etc/ssl/pixelfed
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$DOMAIN" -keyout /etc/ssl/pixelfed/key.pem -out /etc/ssl/pixelfed/cert.pem 2>/dev/null
cat >/etc/nginx/sites-available/pixelfed <<EOF
# upstream's documented site (docs running-pixelfed/installation), with the release link as root
server {
    listen 443 ssl; listen [::]:443 ssl;
    http2 on;
    server_name $DOMAIN;
    root $P/current/public;
    ssl_certificate /etc/ssl/pixelfed/cert.pem;
    ssl_certificate_key /etc/ssl/pixelfed/key.pem;
    add_header X-Frame-Options "SAMEORIGIN";
    add_header X-Content-Type-Options "nosniff";
    index index.html index.htm index.php;
    charset utf-8;
    client_max_body_size 15M;
    location / { try_files \$uri \$uri/ /index.php?\$query_string; }
    location = /favicon.ico { access_log off; log_not_found off; }
    location = /robots.txt  { access_log off; log_not_found off; }
    error_page 404 /index.php;
    location ~ \.php$ {
        fastcgi_split_path_info ^(.+\.php)(/.+)\$;
        fastcgi_pass unix:/run/php/php8.4-fpm-pixelfed.sock;
        fastcgi_index index.php;
        include fastcgi_params;
        fastcgi_param SCRIPT_FILENAME \$realpath_root\$fastcgi_script_name;
        fastcgi_param DOCUMENT_ROOT \$realpath_root;
    }
    location ~ /\.(?!well-known).* { deny all; }
}
EOF
ln -sfn /etc/nginx/sites-available/pixelfed /etc/nginx/sites-enabled/pixelfed && rm -f /etc/nginx/sites-enabled/default
check "nginx -t accepts upstream's site shape" nginx -t -q
systemctl restart nginx

check "without APP_KEY: /api/v1/instance answers 500" test "$(code /api/v1/instance)" = 500
check "... and laravel.log says why" log_has "No application encryption key has been specified."
check "log lines carry [stand-in pixelfed]" log_has "production.ERROR: [stand-in pixelfed]"
out=$(artisan key:generate 2>&1)
KEY=$(sed -n 's/^APP_KEY=//p' $P/shared/.env)
check "key:generate writes APP_KEY=base64:<32 bytes> into .env" bash -c "grep -q 'Application key set successfully.' <<<\"\$0\" && test \$(base64 -d <<<\"${KEY#base64:}\" | wc -c) = 32" "$out"
out=$(artisan key:generate 2>&1)
check "key:generate again (no --force): 'Command cancelled.', key kept" bash -c "grep -q 'Command cancelled.' <<<\"\$0\" && grep -qxF 'APP_KEY=$KEY' $P/shared/.env" "$out"
out=$(artisan migrate 2>&1); rc=$?
check "migrate without --force in production: cancelled, exit 1" bash -c "test $rc = 1 && grep -q 'Command cancelled.' <<<\"\$0\"" "$out"
out=$(artisan migrate --force 2>&1)
check "migrate --force runs v0.14.3's migration" grep -q '2026_01_01_000000_standin_create_pixelfed_tables .* DONE' <<<"$out"
check "migrate --force again: Nothing to migrate." grep -q 'Nothing to migrate.' <<<"$(artisan migrate --force 2>&1)"
check "migrations table: 1 row, batch 1" test "$(psql_pf 'SELECT count(*), max(batch) FROM migrations')" = "1|1"
out=$(artisan storage:link 2>&1)
check "storage:link: public/storage -> storage/app/public" test "$(readlink $P/releases/v0.14.3/public/storage)" = "$P/releases/v0.14.3/storage/app/public"
check "storage:link again: already exists, exit 0" bash -c "(cd $P/current && sudo -u pixelfed php artisan storage:link 2>&1) | grep -q 'already exists'"
check "import:cities imports the cities" grep -q 'Successfully imported 12 entries' <<<"$(artisan import:cities 2>&1)"
check "import:cities again: already imported" grep -q 'Cities already imported' <<<"$(artisan import:cities 2>&1)"
check "instance:actor creates it" grep -q 'succesfully generated' <<<"$(artisan instance:actor 2>&1)"
check "instance:actor again: nothing to do, one row" bash -c "(cd $P/current && sudo -u pixelfed php artisan instance:actor) | grep -q 'No further action' && test \$(sudo -u postgres psql -XAtq -d pixelfed -c 'SELECT count(*) FROM instance_actors') = 1"
artisan passport:keys >/dev/null 2>&1
check "passport:keys: oauth-private.key 600, oauth-public.key 660, owned by pixelfed" test "$(stat -c '%a %U' $P/shared/storage/oauth-private.key) $(stat -c '%a %U' $P/shared/storage/oauth-public.key)" = "600 pixelfed 660 pixelfed"
sum=$(sha256sum <$P/shared/storage/oauth-private.key)
out=$(artisan passport:keys 2>&1); rc=$?
check "passport:keys again: exit 1, 'already exist', key unchanged" bash -c "test $rc = 1 && grep -q 'Encryption keys already exist' <<<\"\$0\" && test \"\$(sha256sum <$P/shared/storage/oauth-private.key)\" = '$sum'" "$out"
check "user:create (non-interactive, --is_admin=true --confirm_email=1)" grep -q 'Created new user!' <<<"$(artisan user:create --name='Lab Admin' --username=admin --email=admin@standin.test --password="$ADMIN_PASS" --is_admin=true --confirm_email=1 2>&1)"
check "... an admin with a verified email and a bcrypt password" test "$(psql_pf "SELECT is_admin, email_verified_at IS NOT NULL, left(password, 4) FROM users WHERE username = 'admin'")" = 't|t|$2y$'
artisan user:create --name=Bob --username=bob --email=bob@standin.test --password=bob-Pass1 --is_admin=1 >/dev/null 2>&1
check "--is_admin=1 does not make an admin (upstream compares with 'true')" test "$(psql_pf "SELECT is_admin FROM users WHERE username = 'bob'")" = f
check "user:create with a taken username fails (exit 1)" bash -c "! (cd $P/current && sudo -u pixelfed php artisan user:create --name=X --username=admin --email=x@standin.test --password=x-Pass123 >/dev/null 2>&1)"
for c in config:cache route:cache view:cache; do artisan $c >/dev/null 2>&1; done
check "config:cache, route:cache, view:cache write their files" test -f $P/current/bootstrap/cache/config.php -a -f $P/current/bootstrap/cache/routes-v7.php -a -n "$(ls $P/shared/storage/framework/views/*.php 2>/dev/null)"

cat >/etc/systemd/system/pixelfed-horizon.service <<EOF
[Unit]
Description=Pixelfed task queueing via Laravel Horizon (fedictl stand-in)
After=network.target
Requires=postgresql.service php8.4-fpm.service redis-server.service

[Service]
Type=simple
WorkingDirectory=$P/current
ExecStart=/usr/bin/php $P/current/artisan horizon
User=pixelfed
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload && systemctl start pixelfed-horizon
check "horizon under systemd: horizon:status says running" horizon_running
check "journal: Horizon started, stand-in version 0.14.3" bash -c "sleep 1; journalctl -u pixelfed-horizon --no-pager -o cat | grep -F '[stand-in pixelfed] horizon: Horizon started successfully.' | grep -q 'version 0.14.3'"

echo "== web (php-fpm behind nginx)"
check "/api/v1/instance: '3.5.3 (compatible; Pixelfed 0.14.3)'" test "$(version)" = "3.5.3 (compatible; Pixelfed 0.14.3)"
check "/api/v1/instance: the stand-in's title" test "$(api /api/v1/instance | json 'd["title"]')" = "Lab Pics (fedictl test stand-in, not Pixelfed)"
check "/.well-known/nodeinfo points at /api/nodeinfo/2.0.json" test "$(api /.well-known/nodeinfo | json 'd["links"][0]["href"]')" = "https://$DOMAIN/api/nodeinfo/2.0.json"
check "nodeinfo: pixelfed 0.14.3, 2 users, registrations closed" test "$(api /api/nodeinfo/2.0.json | json 'd["software"]["name"]+" "+d["software"]["version"]+" "+str(d["usage"]["users"]["total"])+" "+str(d["openRegistrations"])')" = "pixelfed 0.14.3 2 False"
check "webfinger admin -> self link" test "$(api "/.well-known/webfinger?resource=acct:admin@$DOMAIN" | json '[l["href"] for l in d["links"] if l["rel"]=="self"][0]')" = "https://$DOMAIN/users/admin"
check "webfinger for an unknown user: 404" test "$(code "/.well-known/webfinger?resource=acct:nobody@$DOMAIN")" = 404
check "/users/admin as activity+json: a Person" test "$(api /users/admin -H 'Accept: application/activity+json' | json 'd["type"]+" "+d["id"]')" = "Person https://$DOMAIN/users/admin"
check "/i/actor: the instance actor's public key" bash -c "curl -sk --resolve $DOMAIN:443:127.0.0.1 https://$DOMAIN/i/actor | grep -q 'BEGIN PUBLIC KEY'"
check "/users/admin as HTML says it is not Pixelfed" bash -c "curl -sk --resolve $DOMAIN:443:127.0.0.1 https://$DOMAIN/users/admin | grep -q 'This is not Pixelfed'"
check "an unknown path: 404" test "$(code /nothing/here)" = 404

echo "== TRUST_PROXIES and the config cache"
hdr() { api /api/v1/instance -o /dev/null -D - -H 'X-Forwarded-For: 203.0.113.9' -H 'X-Forwarded-Proto: https' | tr -d '\r' | sed -n "s/^$1: //Ip"; }
check "TRUST_PROXIES=127.0.0.1: X-Forwarded-For from nginx's peer is believed" test "$(hdr x-standin-client-ip)" = 203.0.113.9
set_env TRUST_PROXIES ''
systemctl reload php8.4-fpm
check "after editing .env without config:cache nothing changes (.env is not read)" test "$(hdr x-standin-client-ip)" = 203.0.113.9
recache
check "TRUST_PROXIES empty + config:cache: the header is ignored" test "$(hdr x-standin-client-ip)" = 127.0.0.1
set_env TRUST_PROXIES 127.0.0.1; recache
psql_pf "INSERT INTO config_cache (k, v) VALUES ('app.name', 'From Admin UI')"
check "ENABLE_CONFIG_CACHE: a config_cache row overrides APP_NAME" test "$(api /api/v1/instance | json 'd["title"]')" = "From Admin UI (fedictl test stand-in, not Pixelfed)"
psql_pf "DELETE FROM config_cache"

echo "== upload"
TOKEN=$(artisan standin:token admin 2>/dev/null)
check "standin:token admin prints a token" grep -qE '^[0-9a-f]{64}$' <<<"$TOKEN"
check "verify_credentials with it" test "$(api /api/v1/accounts/verify_credentials -H "Authorization: Bearer $TOKEN" | json 'd["username"]')" = admin
php -r '$i = imagecreatetruecolor(800, 600); imagefill($i, 0, 0, imagecolorallocate($i, 200, 30, 90)); imagejpeg($i, "/tmp/pic.jpg", 90);'
check "upload without a token: 401" test "$(code /api/v1/media -F file=@/tmp/pic.jpg)" = 401
up=$(api /api/v1/media -H "Authorization: Bearer $TOKEN" -F file=@/tmp/pic.jpg)
URL=$(json 'd["url"]' <<<"$up" 2>/dev/null)
check "POST /api/v1/media: url https://$DOMAIN/storage/m/_v2/..." grep -q "^https://$DOMAIN/storage/m/_v2/.*\.jpg$" <<<"$URL"
FILE=$P/shared/storage/app/public/${URL#https://$DOMAIN/storage/}
check "... stored under the shared storage/app/public" test -f "$FILE"
api "${URL#https://$DOMAIN}" -o /tmp/pic.back
check "nginx serves it from public/storage byte for byte" cmp -s /tmp/pic.back "$FILE"
check "... and its thumbnail (php-gd)" test "$(code "$(json 'd["preview_url"]' <<<"$up" | sed "s|https://$DOMAIN||")")" = 200
check "Horizon processed the ImageOptimize job" bash -c "for _ in \$(seq 20); do test \"\$(sudo -u postgres psql -XAtq -d pixelfed -c 'SELECT count(*) FROM media WHERE processed_at IS NOT NULL')\" = 1 && exit 0; sleep 0.5; done; exit 1"
check "schedule:run exits 0" bash -c "cd $P/current && sudo -u pixelfed php artisan schedule:run >/dev/null"

echo "== upgrade to v0.14.4"
unpack v0.14.4
check "v0.14.4: composer install" grep -q 'Generating optimized autoload files' /tmp/composer-v0.14.4.log
switch v0.14.4
(cd $P/current && sudo -u pixelfed php artisan storage:link >/dev/null)
check "v0.14.4 before migrate: /api/v1/instance answers (reads nothing new)" test "$(version)" = "3.5.3 (compatible; Pixelfed 0.14.4)"
check "v0.14.4 before migrate: an upload fails (500: its code writes media.sha256)" test "$(code /api/v1/media -H "Authorization: Bearer $TOKEN" -F file=@/tmp/pic.jpg)" = 500
out=$(artisan migrate --force 2>&1)
check "migrate --force: v0.14.4's migration only" bash -c "grep -q '2026_09_30_000000_standin_add_sha256_to_media_table .* DONE' <<<\"\$0\" && ! grep -q create_pixelfed_tables <<<\"\$0\"" "$out"
for c in config:cache route:cache view:cache; do artisan $c >/dev/null 2>&1; done
systemctl reload php8.4-fpm
pid=$(horizon_pid)
artisan horizon:terminate >/dev/null 2>&1
check "horizon:terminate: systemd starts Horizon again (new PID) on the new code" bash -c "for _ in \$(seq 40); do p=\$(systemctl show -p MainPID --value pixelfed-horizon); [ \"\$p\" != 0 ] && [ \"\$p\" != '$pid' ] && journalctl -u pixelfed-horizon --no-pager -o cat | grep -q 'version 0.14.4' && exit 0; sleep 0.5; done; exit 1"
check "... horizon:status: running" horizon_running
up=$(api /api/v1/media -H "Authorization: Bearer $TOKEN" -F file=@/tmp/pic.jpg)
check "v0.14.4 after migrate: upload works and records sha256" test "$(psql_pf "SELECT sha256 FROM media WHERE id = $(json 'd["id"]' <<<"$up")")" = "$(sha256sum /tmp/pic.jpg | cut -d' ' -f1)"
check "the file uploaded under v0.14.3 is still served" test "$(code "${URL#https://$DOMAIN}")" = 200

echo "== rollback to v0.14.3 on v0.14.4's schema"
switch v0.14.3
check "v0.14.3 answers on the newer schema" test "$(version)" = "3.5.3 (compatible; Pixelfed 0.14.3)"
check "v0.14.3 uploads on the newer schema" test "$(code /api/v1/media -H "Authorization: Bearer $TOKEN" -F file=@/tmp/pic.jpg)" = 200
switch v0.14.4

echo "== v0.14.5-broken and the way back"
unpack v0.14.5-broken
switch v0.14.5-broken
out=$(artisan migrate --force 2>&1)
check "v0.14.5-broken: migrate --force runs its migration" grep -q '2026_12_01_000000_standin_add_v0145_marker_to_users_table .* DONE' <<<"$out"
recache; artisan horizon:terminate >/dev/null 2>&1
check "every web request fails: /api/v1/instance 500" test "$(code /api/v1/instance)" = 500
check "... nodeinfo 500 too" test "$(code /api/nodeinfo/2.0.json)" = 500
check "... laravel.log: broken on purpose" log_has "stand-in v0.14.5 is broken on purpose"
sleep 4
check "Horizon refuses to start (journal)" bash -c "journalctl -u pixelfed-horizon --no-pager -o cat | grep -q 'stand-in v0.14.5 is broken on purpose: Horizon refuses to start'"
check "horizon:status: inactive, exit 1" bash -c "! (cd $P/current && sudo -u pixelfed php artisan horizon:status >/dev/null 2>&1)"
check "the schema has the new column" test "$(psql_pf "SELECT count(*) FROM pg_attribute WHERE attname = 'standin_v0145_marker'")" = 1
switch v0.14.4
systemctl restart pixelfed-horizon
check "back on v0.14.4 (newer schema): /api/v1/instance 200" test "$(version)" = "3.5.3 (compatible; Pixelfed 0.14.4)"
check "back on v0.14.4: Horizon running" horizon_running

echo "== refusals"
set_env REDIS_PASSWORD wrong-password; recache
check "wrong REDIS_PASSWORD: 500" test "$(code /api/v1/instance)" = 500
check "... laravel.log: Redis refused the password" log_has "refused the password (REDIS_PASSWORD)"
set_env REDIS_PASSWORD "$REDIS_PASS"; recache
systemctl stop postgresql 'postgresql@*'
check "PostgreSQL down: 500" test "$(code /api/v1/instance)" = 500
check "... laravel.log: Cannot connect to PostgreSQL" log_has "Cannot connect to PostgreSQL at 127.0.0.1:5432"
systemctl start postgresql; sleep 1
check "PostgreSQL back: 200" test "$(code /api/v1/instance)" = 200

systemctl stop pixelfed-horizon
echo "$passed passed, $failed failed"
[ $failed = 0 ]
