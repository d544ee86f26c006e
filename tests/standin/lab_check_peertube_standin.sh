#!/usr/bin/env bash
# Check the stand-in PeerTube releases on a real Debian 13 lab host, the way upstream's
# production guide installs, upgrades and rolls back PeerTube.
#
#   tests/standin/lab_check_peertube_standin.sh HOST     (from the repository, as root; HOST must
#                                                         be a running `fedictl lab` host)
#
# Builds the zips (and their signatures), the NodeSource stand-in's nodejs package (Node 24 with
# npm; tests/standin/nodesource/) and takes pnpm's npm tarball (the version package.json names,
# from .work/cache/pnpm or `npm pack`), copies them with this script to HOST and runs it there
# (--on-host): installs postgresql, redis-server (requirepass, database 3), ffmpeg, nginx and
# that nodejs; checks the signatures and checksums; lays out /var/www/peertube as upstream's
# guide does; `npm run install-node-dependencies -- --production` offline; upstream's unit and
# nginx site from the zip (self-signed certificate); then v8.2.4 (refused without the
# extensions, then installed), the API through nginx, an upload to HLS served by nginx's static
# bypass, reset-password, the upgrade to v8.3.2 with pg_dump and the 8.3 manual script, the
# broken v8.3.3 and the rollback by pg_restore, and Redis going away.
# Ends with "N passed, N failed"; exit 1 when a check failed. The host is left as it is: stop it
# with `fedictl lab down HOST`.
set -uo pipefail

if [ "${1:-}" != --on-host ]; then
  host=${1:?usage: $0 LAB_HOST}
  here=$(cd "$(dirname "$0")" && pwd)
  repo=$(cd "$here/../.." && pwd)
  fedictl=${FEDICTL:-$repo/.venv/bin/fedictl}
  python=${PYTHON:-$repo/.venv/bin/python}
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  "$python" "$here/build_peertube_standin.py" --out "$out" all >/dev/null || exit 1
  pnpm=$("$python" -c 'import json,sys; print(json.load(sys.stdin)["packageManager"].split("@")[1].split("+")[0])' \
    < <(unzip -p "$out/peertube-standin-v8.3.2.zip" peertube-v8.3.2/package.json)) || exit 1
  cache=$repo/.work/cache/pnpm
  if [ ! -f "$cache/pnpm-$pnpm.tgz" ]; then
    mkdir -p "$cache" && (cd "$cache" && npm pack "pnpm@$pnpm" >/dev/null) || { echo "cannot get pnpm $pnpm" >&2; exit 1; }
  fi
  cp "$cache/pnpm-$pnpm.tgz" "$out/"
  "$python" "$here/nodesource/build_nodesource_standin.py" "$out/ns" >/dev/null || exit 1
  cp "$out"/ns/repo/pool/main/n/nodejs/nodejs_*.deb "$out/" && rm -rf "$out/ns"
  cp "$here/lab_check_peertube_standin.sh" "$out/"
  tar -C "$out" -c . | "$fedictl" lab ssh "$host" -- 'rm -rf /root/ptstandin && mkdir -p /root/ptstandin && tar -C /root/ptstandin -x' || exit 1
  exec "$fedictl" lab ssh "$host" -- 'bash /root/ptstandin/lab_check_peertube_standin.sh --on-host'
fi

# ---- on the lab host (root) ----
A=/root/ptstandin
P=/var/www/peertube
DOMAIN=video.standin.test
REDIS_PASS='r3dis-Pass#1'
DB_PASS="pg-Pass'1 x"
ROOT_PASS='root-Pass 1$x'
passed=0; failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
as_pt() { sudo -H -u peertube env NODE_CONFIG_DIR=$P/config NODE_ENV=production "$@"; }
api() { local path=$1; shift; curl -sk -m 120 --resolve "$DOMAIN:443:127.0.0.1" "$@" "https://$DOMAIN$path"; }
code() { api "$1" -o /dev/null -w '%{http_code}' "${@:2}"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ping_ok() { for _ in $(seq 150); do [ "$(curl -s -m 2 http://127.0.0.1:9000/api/v1/ping)" = pong ] && return 0; sleep 0.2; done; return 1; }
# (grep reads everything: with -q and pipefail, journalctl's SIGPIPE would fail the check)
journal_has() { journalctl -t peertube --no-pager -o cat --since "@$since" | grep -F -- "$1" >/dev/null; }
mark() { since=$(date +%s); sleep 1; }
psql_pt() { sudo -u postgres psql -XAtq -d peertube_prod -c "$1"; }
unpack() { # unpack RELEASE: as upstream's guide, into versions/, then the node dependencies
  local rel=$1
  install -o peertube -g peertube -m 644 "$A/peertube-standin-$rel.zip" "$P/versions/" &&
    (cd $P/versions && sudo -u peertube unzip -q -o "peertube-standin-$rel.zip" && rm "peertube-standin-$rel.zip") &&
    (cd "$P/versions/peertube-$rel" && as_pt npm run -s install-node-dependencies -- --production >/tmp/pnpm-$rel.log 2>&1)
}
switch() { sudo -u peertube ln -sfn "versions/peertube-$1" $P/peertube-latest.new && mv -T $P/peertube-latest.new $P/peertube-latest &&
  sudo -u peertube cp $P/peertube-latest/config/default.yaml $P/config/default.yaml; }

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq postgresql redis-server ffmpeg nginx curl unzip gpg openssl sudo >/tmp/apt.log 2>&1 &&
  apt-get install -y -qq "$A"/nodejs_*.deb >>/tmp/apt.log 2>&1
check "apt-get install postgresql redis-server ffmpeg nginx + the NodeSource stand-in's nodejs" test $? -eq 0
npm install -g --offline "$A"/pnpm-*.tgz >/tmp/npm-g.log 2>&1
check "npm install -g pnpm (the packageManager version, offline)" test "$(pnpm --version)" = "$(basename "$A"/pnpm-*.tgz .tgz | sed 's/^pnpm-//')"
echo "node $(node -v), npm $(npm -v), pnpm $(pnpm --version), ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), PostgreSQL $(sudo -u postgres psql -XAtc 'show server_version'), $(redis-server --version | cut -d' ' -f3), $(nginx -v 2>&1)"

echo "== release files"
check "sha256sum -c of every zip" bash -c "cd $A && sha256sum -c --quiet ./*.zip.sha256"
export GNUPGHOME=$(mktemp -d)
gpg -q --batch --import $A/signing-key.asc 2>/dev/null
verify() { gpg -q --batch --verify "$1" "$2" 2>/dev/null; }
check "the key's fingerprint is signing-key.fingerprint" test "$(gpg --batch --with-colons --list-keys | awk -F: '/^fpr:/ {print $10; exit}')" = "$(cat $A/signing-key.fingerprint)"
for z in "$A"/*.zip; do
  check "gpg --verify $(basename "$z").asc" verify "$z.asc" "$z"
done
cp $A/peertube-standin-v8.3.2.zip /tmp/tampered.zip && echo x >>/tmp/tampered.zip
check "a tampered zip does not verify" bash -c "! gpg -q --batch --verify $A/peertube-standin-v8.3.2.zip.asc /tmp/tampered.zip 2>/dev/null"
[ "$failed" = 0 ] || { echo "$passed passed, $failed failed"; exit 1; }
rm -rf "$GNUPGHOME"; unset GNUPGHOME

echo "== infrastructure (fresh every run)"
systemctl stop peertube 2>/dev/null; systemctl reset-failed peertube 2>/dev/null
grep -q '^requirepass' /etc/redis/redis.conf || echo "requirepass $REDIS_PASS" >>/etc/redis/redis.conf
systemctl restart redis-server
redis-cli -a "$REDIS_PASS" --no-auth-warning -n 3 del standin:peertube:heartbeat >/dev/null
sudo -u postgres psql -Xq -c 'DROP DATABASE IF EXISTS peertube_prod' -c 'DROP ROLE IF EXISTS peertube'
sudo -u postgres psql -Xq -c "CREATE ROLE peertube LOGIN PASSWORD '${DB_PASS//\'/\'\'}'"
sudo -u postgres createdb -O peertube -E UTF8 -T template0 peertube_prod
id peertube >/dev/null 2>&1 || useradd -m -d $P -s /usr/sbin/nologin peertube
rm -rf $P/versions $P/config $P/storage $P/backup $P/peertube-latest
chmod 755 $P && sudo -u peertube mkdir $P/config $P/storage $P/versions $P/backup && chmod 750 $P/config

echo "== v8.2.4: install as upstream's guide does"
unpack v8.2.4
check "npm run install-node-dependencies -- --production (pnpm, offline)" test -d $P/versions/peertube-v8.2.4/node_modules
sudo -u peertube ln -s versions/peertube-v8.2.4 $P/peertube-latest
sudo -u peertube cp $P/peertube-latest/config/default.yaml $P/config/default.yaml
sudo -u peertube tee $P/config/production.yaml >/dev/null <<EOF
listen:
  hostname: '127.0.0.1'
  port: 9000
webserver:
  https: true
  hostname: '$DOMAIN'
  port: 443
secrets:
  peertube: '$(openssl rand -hex 32)'
database:
  hostname: '127.0.0.1'
  port: 5432
  suffix: '_prod'
  username: 'peertube'
  password: "${DB_PASS//\'/\'}"
redis:
  hostname: '127.0.0.1'
  port: 6379
  auth: '$REDIS_PASS'
  db: 3
storage:
$(for d in tmp tmp_persistent bin avatars web_videos streaming_playlists original_video_files redundancy logs previews thumbnails storyboards torrents captions cache plugins well_known uploads client_overrides; do
  echo "  $d: '$P/storage/${d//_/-}/'"; done)
admin:
  email: 'admin@standin.test'
instance:
  name: 'Lab Tube'
EOF
chmod 640 $P/config/production.yaml
cp $P/peertube-latest/support/systemd/peertube.service /etc/systemd/system/peertube.service
mkdir -p /etc/systemd/system/peertube.service.d
printf '[Service]\nEnvironment="PT_INITIAL_ROOT_PASSWORD=%s"\n' "$ROOT_PASS" >/etc/systemd/system/peertube.service.d/root-password.conf
chmod 600 /etc/systemd/system/peertube.service.d/root-password.conf
systemctl daemon-reload

mkdir -p /etc/letsencrypt/live/$DOMAIN
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$DOMAIN" -keyout /etc/letsencrypt/live/$DOMAIN/privkey.pem \
  -out /etc/letsencrypt/live/$DOMAIN/fullchain.pem 2>/dev/null
sed -e "s/\${WEBSERVER_HOST}/$DOMAIN/g" -e 's/\${PEERTUBE_HOST}/127.0.0.1:9000/g' $P/peertube-latest/support/nginx/peertube >/etc/nginx/sites-available/peertube
ln -sfn /etc/nginx/sites-available/peertube /etc/nginx/sites-enabled/peertube && rm -f /etc/nginx/sites-enabled/default
check "nginx -t accepts the zip's site (placeholders replaced)" nginx -t -q
systemctl reload nginx || systemctl restart nginx

mark; systemctl start peertube; sleep 4
check "without pg_trgm/unaccent the start fails" bash -c '! curl -s -m 2 http://127.0.0.1:9000/api/v1/ping'
check "... with upstream's message in the journal" journal_has "You need to enable pg_trgm extension in PostgreSQL."
for e in pg_trgm unaccent; do sudo -u postgres psql -Xq -d peertube_prod -c "CREATE EXTENSION $e"; done
systemctl stop peertube; systemctl reset-failed peertube
mark; systemctl start peertube
check "v8.2.4 answers /api/v1/ping" ping_ok
check "journal (SyslogIdentifier=peertube): the stand-in's lines" journal_has "[stand-in peertube]"
check "journal: root's password from PT_INITIAL_ROOT_PASSWORD" journal_has "User password: $ROOT_PASS"
check "journal: listening" journal_has "HTTP server listening on 127.0.0.1:9000"
check "storage/logs/peertube.log written by peertube" test "$(stat -c %U $P/storage/logs/peertube.log)" = peertube
check "/api/v1/ping through nginx" test "$(api /api/v1/ping)" = pong
check "/api/v1/config: 8.2.4" test "$(api /api/v1/config | json 'd["serverVersion"]')" = 8.2.4
check "/api/v1/config: the stand-in's instance name" test "$(api /api/v1/config | json 'd["instance"]["name"]')" = "Lab Tube (fedictl test stand-in, not PeerTube)"
check "/nodeinfo/2.0.json: peertube 8.2.4" test "$(api /nodeinfo/2.0.json | json 'd["software"]["name"]+" "+d["software"]["version"]')" = "peertube 8.2.4"
check "webfinger root -> self link" test "$(api "/.well-known/webfinger?resource=acct:root@$DOMAIN" | json '[l["href"] for l in d["links"] if l["rel"]=="self"][0]')" = "https://$DOMAIN/accounts/root"
check "/accounts/root as activity+json: a Person" test "$(api /accounts/root -H 'Accept: application/activity+json' | json 'd["type"]')" = Person
check "Redis database 3 holds the heartbeat" bash -c "redis-cli -a '$REDIS_PASS' --no-auth-warning -n 3 get standin:peertube:heartbeat | grep -q '\"version\":\"8.2.4\"'"

token() { # token PASSWORD: an access token for root through nginx, or nothing
  local client id secret
  client=$(api /api/v1/oauth-clients/local)
  id=$(json 'd["client_id"]' <<<"$client") secret=$(json 'd["client_secret"]' <<<"$client")
  api /api/v1/users/token --data-urlencode "client_id=$id" --data-urlencode "client_secret=$secret" \
    --data-urlencode grant_type=password --data-urlencode response_type=code --data-urlencode username=root \
    --data-urlencode "password=$1" | json 'd.get("access_token","")' 2>/dev/null
}
check "oauth-clients/local refused for a foreign Host" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: evil.test' http://127.0.0.1:9000/api/v1/oauth-clients/local)" = 403
TOKEN=$(token "$ROOT_PASS")
check "password grant through nginx gives a token" test -n "$TOKEN"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=25 -f lavfi -i sine=frequency=440 -t 6 \
  -c:v libx264 -pix_fmt yuv420p -c:a aac -shortest /tmp/clip.mp4
UP=$(api /api/v1/videos/upload -H "Authorization: Bearer $TOKEN" -F videofile=@/tmp/clip.mp4 -F 'name=Lab démo vidéo' -F channelId=1)
VIDEO=$(json 'd["video"]["uuid"]' <<<"$UP" 2>/dev/null)
check "upload through nginx (multipart, as upstream's legacy upload)" test -n "$VIDEO"
check "HLS files in storage/streaming-playlists/hls/<uuid>/" test -f "$P/storage/streaming-playlists/hls/$VIDEO/master.m3u8" -a -f "$P/storage/streaming-playlists/hls/$VIDEO/360-000.ts"
check "storage/tmp is empty again" test -z "$(ls -A $P/storage/tmp)"
PLAYLIST=$(api "/api/v1/videos/$VIDEO" | json 'd["streamingPlaylists"][0]["playlistUrl"]')
check "playlistUrl is https://$DOMAIN/static/streaming-playlists/hls/<uuid>/master.m3u8" test "$PLAYLIST" = "https://$DOMAIN/static/streaming-playlists/hls/$VIDEO/master.m3u8"
headers=$(api "/static/streaming-playlists/hls/$VIDEO/master.m3u8" -D - -o /tmp/master.m3u8)
check "nginx serves the playlist (static bypass: no X-Powered-By, CORS *)" bash -c "grep -q '^HTTP/2 200' <<<\"\$0\" && ! grep -qi '^x-powered-by' <<<\"\$0\" && grep -qi '^access-control-allow-origin: \*' <<<\"\$0\"" "$headers"
check "... byte for byte the file on disk" cmp -s /tmp/master.m3u8 "$P/storage/streaming-playlists/hls/$VIDEO/master.m3u8"
check "a segment through nginx" test "$(code "/static/streaming-playlists/hls/$VIDEO/360-000.ts")" = 200
check "search (pg_trgm + unaccent) finds it without accents" test "$(api '/api/v1/search/videos?search=lab%20demo%20video' | json 'd["total"]')" = 1

echo "== reset-password (upstream's command, password on standard input)"
out=$(cd $P/peertube-latest && printf '%s\n' 'new-Lab pass2' | as_pt npm run -s reset-password -- -u root 2>&1)
check "npm run reset-password -- -u root prints 'User password updated.'" grep -q '^User password updated.$' <<<"$out"
check "the old password no longer works" test -z "$(token "$ROOT_PASS")"
TOKEN=$(token 'new-Lab pass2')
check "the new one does" test -n "$TOKEN"

echo "== upgrade to v8.3.2"
sudo -u postgres pg_dump -Fc -f /tmp/824.dump peertube_prod && install -o peertube -m 600 /tmp/824.dump $P/backup/sql-peertube_prod-824.bak
unpack v8.3.2
check "v8.3.2: node dependencies installed" test -d $P/versions/peertube-v8.3.2/node_modules
check "v8.3.2's production.yaml.example has a key v8.2.4's lacks" bash -c "diff $P/versions/peertube-v8.2.4/config/production.yaml.example $P/versions/peertube-v8.3.2/config/production.yaml.example | grep -q '^> *max_direct_replies:'"
switch v8.3.2
mark; systemctl restart peertube
check "v8.3.2 answers after the restart" ping_ok
check "journal: Migrations finished. New migration version schema: 1125" journal_has "Migrations finished. New migration version schema: 1125"
check "/api/v1/config: 8.3.2" test "$(api /api/v1/config | json 'd["serverVersion"]')" = 8.3.2
check "storageBytes is empty before the manual script" test "$(api "/api/v1/videos/$VIDEO" | json 'd["streamingPlaylists"][0]["storageBytes"]')" = None
out=$(cd $P/peertube-latest && as_pt node dist/scripts/migrations/peertube-8.3.js 2>&1)
check "peertube-8.3.js backfills the playlist" grep -q 'backfilled 1 streaming playlists (0 already done)' <<<"$out"
out=$(cd $P/peertube-latest && as_pt node dist/scripts/migrations/peertube-8.3.js 2>&1)
check "peertube-8.3.js again: nothing to do" grep -q 'backfilled 0 streaming playlists (1 already done)' <<<"$out"
check "storageBytes is filled" test "$(api "/api/v1/videos/$VIDEO" | json 'd["streamingPlaylists"][0]["storageBytes"] > 0')" = True

echo "== v8.3.3-broken and the rollback"
sudo -u postgres pg_dump -Fc -f /tmp/832.dump peertube_prod
unpack v8.3.3-broken
switch v8.3.3-broken
mark; systemctl restart peertube; sleep 6
check "v8.3.3-broken never answers" bash -c '! curl -s -m 2 http://127.0.0.1:9000/api/v1/ping'
check "journal: its migration ran (schema 1130)" journal_has "Migrations finished. New migration version schema: 1130"
check "journal: stand-in v8.3.3 is broken on purpose" journal_has "stand-in v8.3.3 is broken on purpose"
check "systemd kept restarting it (Restart=always)" test "$(systemctl show -p NRestarts --value peertube)" -ge 1
check "the database is at 1130 with the new column" test "$(psql_pt 'SELECT "migrationVersion" FROM application')/$(psql_pt "SELECT count(*) FROM pg_attribute WHERE attname = 'v833Marker'")" = 1130/1
systemctl stop peertube; systemctl reset-failed peertube
switch v8.3.2
mark; systemctl start peertube; sleep 4
check "v8.3.2 on the 1130 schema refuses to start" journal_has "Database schema version 1130 is newer than this release's (1125)"
systemctl stop peertube; systemctl reset-failed peertube
sudo -u postgres pg_restore -c -C -d postgres /tmp/832.dump
check "pg_restore -c -C -d postgres: back at 1125, no new column" test "$(psql_pt 'SELECT "migrationVersion" FROM application')/$(psql_pt "SELECT count(*) FROM pg_attribute WHERE attname = 'v833Marker'")" = 1125/0
mark; systemctl start peertube
check "rolled back: v8.3.2 answers" ping_ok
check "rolled back: /api/v1/config says 8.3.2" test "$(api /api/v1/config | json 'd["serverVersion"]')" = 8.3.2
check "rolled back: the video and its HLS are still there" test "$(code "/static/streaming-playlists/hls/$VIDEO/master.m3u8")/$(api "/api/v1/videos/$VIDEO" | json 'd["state"]["id"]')" = 200/1
check "rolled back: the password set before the upgrade works" test -n "$(token 'new-Lab pass2')"

echo "== Redis goes away"
systemctl stop redis-server
mark; systemctl restart peertube; sleep 4
check "without Redis the start fails" journal_has "Cannot connect to Redis at 127.0.0.1:6379 (db 3)"
systemctl start redis-server; systemctl reset-failed peertube; systemctl restart peertube
check "with Redis back it answers" ping_ok

systemctl stop peertube
echo "$passed passed, $failed failed"
[ $failed = 0 ]
