#!/usr/bin/env bash
# Check the stand-in Mastodon releases on a real Debian 13 lab host, with upstream's commands.
#
#   tests/standin/lab_check_mastodon_standin.sh HOST     (from the repository, as root; HOST must
#                                                          be a running `fedictl lab` host)
#
# Builds the archives, copies them with this script to HOST, and runs it there (--on-host): installs
# postgresql, redis-server and mastodon/debian-packages.txt, then as the mastodon user: db:prepare,
# accounts create, web/sidekiq/streaming under systemd (the role's environment: PWD and
# BUNDLE_GEMFILE on the live link), every endpoint, the cleanup commands, a zero-downtime upgrade
# v4.5.13 -> v4.5.14 under a request loop, and the broken v4.5.15 failing its hot restart.
# Ends with "N passed, N failed"; exit 1 when a check failed. The host is left as it is: stop it
# with `fedictl lab down HOST`.
set -uo pipefail

if [ "${1:-}" != --on-host ]; then
  host=${1:?usage: $0 LAB_HOST}
  here=$(cd "$(dirname "$0")" && pwd)
  fedictl=${FEDICTL:-$here/../../.venv/bin/fedictl}
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  python3 "$here/build_mastodon_standin.py" all --out "$out" >/dev/null || exit 1
  cp "$here/mastodon/debian-packages.txt" "$here/lab_check_mastodon_standin.sh" "$out/"
  tar -C "$out" -c . | "$fedictl" lab ssh "$host" -- 'rm -rf /root/standin && mkdir -p /root/standin && tar -C /root/standin -x' || exit 1
  exec "$fedictl" lab ssh "$host" -- 'bash /root/standin/lab_check_mastodon_standin.sh --on-host'
fi

# ---- on the lab host (root) ----
A=/root/standin
M=/home/mastodon
REDIS_PASS='r3dis-Pass#1'
# shellcheck disable=SC2016 # a literal $ in a password, on purpose (dotenv must keep it)
DB_PASS='pg-Pass$1 x'
passed=0; failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
as_m() { su mastodon -s /bin/bash -c "cd $M/live && export RAILS_ENV=production && $1"; }
get() { # get PORT PATH [curl args...]: body of an https-proxied request for social.standin.test
  local port=$1 path=$2; shift 2
  curl -sS -m 5 -H 'Host: social.standin.test' -H 'X-Forwarded-Proto: https' "$@" "http://127.0.0.1:$port$path"
}
running() { pgrep -f "$1" >/dev/null; }
code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@"; }
wait_http() { for _ in $(seq 100); do curl -s -m 1 -o /dev/null "$1" && return 0; sleep 0.2; done; return 1; }
unpack() { # unpack RELEASE: as the role does, beside the others, owned by mastodon
  local d=$M/releases/$1
  rm -rf "$d" && mkdir -p "$d" && tar -xzf "$A/mastodon-standin-$1.tar.gz" -C "$d" --no-same-owner &&
    ln -sfn $M/shared/.env.production "$d/.env.production" &&
    ln -sfn $M/shared/public/system "$d/public/system" && chown -R -h mastodon:mastodon "$d"
}
switch() { ln -sfn "$M/releases/$1" $M/live.new && mv -T $M/live.new $M/live; }
start_web() {
  systemctl reset-failed sb-mastodon-web 2>/dev/null
  systemd-run -q --unit=sb-mastodon-web --uid=mastodon --gid=mastodon -p WorkingDirectory=$M/live \
    -E RAILS_ENV=production -E PORT=3000 -E PWD=$M/live -E BUNDLE_GEMFILE=$M/live/Gemfile \
    /usr/bin/bundle exec puma -C config/puma.rb
}

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && xargs -a $A/debian-packages.txt apt-get install -y -qq postgresql redis-server curl >/tmp/apt.log 2>&1
check "apt-get install postgresql redis-server + debian-packages.txt" test $? -eq 0
echo "ruby $(ruby -e 'print RUBY_VERSION'), node $(node -v), $(puma --version), PostgreSQL $(su postgres -c 'psql -Atc "show server_version"')"

echo "== infrastructure: Redis with a password, a PostgreSQL role with a password"
grep -q '^requirepass' /etc/redis/redis.conf || echo "requirepass $REDIS_PASS" >>/etc/redis/redis.conf
systemctl restart redis-server
id mastodon >/dev/null 2>&1 || adduser --disabled-password --gecos '' mastodon >/dev/null
# Start from nothing, so the script can run again on the same host.
systemctl stop sb-mastodon-web sb-mastodon-sidekiq sb-mastodon-streaming 2>/dev/null
systemctl reset-failed sb-mastodon-web sb-mastodon-sidekiq sb-mastodon-streaming 2>/dev/null
su postgres -c "psql -qc 'DROP DATABASE IF EXISTS mastodon_production'"
su postgres -c "psql -qc 'DROP ROLE IF EXISTS mastodon'"
echo "CREATE ROLE mastodon LOGIN PASSWORD '$DB_PASS'" | su postgres -c 'psql -q'
su postgres -c "psql -qc 'CREATE DATABASE mastodon_production OWNER mastodon'"
rm -rf $M/releases $M/shared $M/live
mkdir -p $M/releases $M/shared/public/system
cat >$M/shared/.env.production <<ENV
LOCAL_DOMAIN=social.standin.test
WEB_DOMAIN=www.standin.test
ALTERNATE_DOMAINS=alt1.standin.test,alt2.standin.test
DB_HOST=127.0.0.1
DB_PORT=5432
DB_NAME=mastodon_production
DB_USER=mastodon
DB_PASS='$DB_PASS'
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_PASSWORD="$REDIS_PASS"
REDIS_DB=3
SECRET_KEY_BASE=$(printf 'ab%.0s' $(seq 64))
ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY=AAAAbbbbCCCCddddEEEEffffGGGGhhhh
ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT=IIIIjjjjKKKKllllMMMMnnnnOOOOpppp
ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY=QQQQrrrrSSSSttttUUUUvvvvWWWWxxxx
ENV
chown -R mastodon:mastodon $M/shared $M/releases && chmod 600 $M/shared/.env.production

echo "== v4.5.13: install"
unpack v4.5.13 && switch v4.5.13
check "db:prepare on an empty database" as_m 'bin/rails db:prepare'
# shellcheck disable=SC2016 # expanded by the mastodon user's shell
check "db:prepare again (idempotent, nothing pending)" as_m 'out=$(bin/rails db:prepare) && ! grep -q migrating <<<"$out"'
check "schema_migrations holds the pre and post migrations" test "$(as_m "PGPASSWORD='$DB_PASS' psql -h 127.0.0.1 -U mastodon mastodon_production -Atc 'select count(*) from schema_migrations'")" = 2
out=$(as_m 'bin/tootctl accounts create alice --email alice@example.com --confirmed --role Owner --approve')
check "accounts create prints OK and a 32-hex password" grep -Eq '^New password: [0-9a-f]{32}$' <<<"$out"
out=$(as_m 'bin/tootctl accounts create alice --email alice2@example.com --confirmed --role Owner --approve' 2>&1); rc=$?
check "accounts create again exits 1 with 'taken'" test $rc = 1 -a "$(grep -c taken <<<"$out")" -ge 1
check "tootctl --version prints 4.5.13" test "$(as_m 'bin/tootctl --version')" = 4.5.13
check "assets:precompile succeeds" as_m 'bin/rails assets:precompile'
# shellcheck disable=SC2016 # expanded by the mastodon user's shell
check "a blank AR key aborts with upstream's message" as_m 'out=$(ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY= bin/rails db:migrate 2>&1); test $? = 1 && grep -q "requires that these variables are set" <<<"$out"'

echo "== v4.5.13: processes"
start_web
systemd-run -q --unit=sb-mastodon-sidekiq --uid=mastodon --gid=mastodon -p WorkingDirectory=$M/live \
  -E RAILS_ENV=production -E DB_POOL=25 -E PWD=$M/live -E BUNDLE_GEMFILE=$M/live/Gemfile /usr/bin/bundle exec sidekiq -c 25
systemd-run -q --unit=sb-mastodon-streaming --uid=mastodon --gid=mastodon -p WorkingDirectory=$M/live \
  -E NODE_ENV=production -E PORT=4000 /usr/bin/node ./streaming
check "web answers /health" wait_http http://127.0.0.1:3000/health
check "streaming answers" wait_http http://127.0.0.1:4000/metrics
check "GET /health without Host -> 200 OK" test "$(curl -s http://127.0.0.1:3000/health)" = OK
check "unknown Host -> 403" test "$(code -H 'Host: evil.test' -H 'X-Forwarded-Proto: https' http://127.0.0.1:3000/api/v2/instance)" = 403
check "plain http -> 301" test "$(code -H 'Host: social.standin.test' http://127.0.0.1:3000/api/v2/instance)" = 301
check "ALTERNATE_DOMAINS host accepted" test "$(code -H 'Host: alt2.standin.test' -H 'X-Forwarded-Proto: https' http://127.0.0.1:3000/api/v2/instance)" = 200
body=$(get 3000 /api/v2/instance)
check "/api/v2/instance: version 4.5.13" grep -q '"version":"4.5.13"' <<<"$body"
check "/api/v2/instance: stand-in title" grep -q '"title":"social.standin.test (fedictl test stand-in, not Mastodon)"' <<<"$body"
check "/api/v2/instance: one active user, read from PostgreSQL" grep -q '"active_month":1' <<<"$body"
check "/.well-known/nodeinfo links WEB_DOMAIN" grep -q 'https://www.standin.test/nodeinfo/2.0' <<<"$(get 3000 /.well-known/nodeinfo)"
check "/nodeinfo/2.0 says mastodon 4.5.13" grep -q '"software":{"name":"mastodon","version":"4.5.13"}' <<<"$(get 3000 /nodeinfo/2.0)"
check "webfinger alice -> self link" grep -q '"rel":"self","type":"application/activity+json","href":"https://www.standin.test/users/alice"' <<<"$(get 3000 '/.well-known/webfinger?resource=acct:alice@social.standin.test')"
check "webfinger unknown -> 404" test "$(code -H 'Host: social.standin.test' -H 'X-Forwarded-Proto: https' 'http://127.0.0.1:3000/.well-known/webfinger?resource=acct:bob@social.standin.test')" = 404
check "/users/alice as activity+json is a Person" grep -q '"type":"Person"' <<<"$(get 3000 /users/alice -H 'Accept: application/activity+json')"
check "streaming health OK with no-store" grep -qi 'cache-control: private, no-store' <<<"$(curl -si http://127.0.0.1:4000/api/v1/streaming/health)"
check "streaming /metrics" grep -q mastodon_streaming_connected_clients <<<"$(curl -s http://127.0.0.1:4000/metrics)"
sleep 6
check "sidekiq heartbeat in Redis DB 3" grep -q '"accounts":1' <<<"$(redis-cli -a "$REDIS_PASS" --no-auth-warning -n 3 get standin:sidekiq:heartbeat)"
check "sidekiq process title" running '^sidekiq 7\.[0-9.]+ mastodon \[[0-9]+ of 25 busy\]'

echo "== cleanup commands"
as_m 'bin/tootctl standin seed --days-ago 30' >/dev/null
check "media remove --days 7 removes the seeded file" grep -q '^Removed 1 media attachments' <<<"$(as_m 'bin/tootctl media remove --days 7')"
check "preview_cards remove --days 14" grep -q '^Removed 1 preview cards' <<<"$(as_m 'bin/tootctl preview_cards remove --days 14')"
check "statuses remove --days 7" grep -q 'removed 1 out of 1 statuses' <<<"$(as_m 'bin/tootctl statuses remove --days 7')"
check "no cached file left" test -z "$(find $M/shared/public/system -type f)"
check "cache clear" test "$(as_m 'bin/tootctl cache clear')" = OK

echo "== upgrade to v4.5.14 (zero downtime)"
unpack v4.5.14
check "pre-deployment migrations only" as_m "cd $M/releases/v4.5.14 && SKIP_POST_DEPLOYMENT_MIGRATIONS=true bin/rails db:migrate | grep -q AddLanguageToStatuses"
check "the post-deployment one is still pending" as_m "cd $M/releases/v4.5.14 && bin/rails db:migrate:status | grep -q 'down.*Add index statuses on language'"
loop=/tmp/sb-loop.txt; : >$loop
(end=$((SECONDS + 12)); while [ $SECONDS -lt $end ]; do
  r=$(get 3000 /api/v2/instance -w ' %{http_code}' 2>/dev/null); echo "rc=$? ${r##* } $(grep -o '"version":"[^"]*"' <<<"$r")" >>$loop; sleep 0.05
done) &
sleep 3; switch v4.5.14; kill -USR1 "$(systemctl show -p MainPID --value sb-mastodon-web)"; wait
sort $loop | uniq -c
check "no request failed during the hot restart" test "$(grep -vc '^rc=0 200' $loop)" = 0
check "web serves 4.5.14 after SIGUSR1" test "$(tail -1 $loop)" = 'rc=0 200 "version":"4.5.14"'
check "post-deployment migrations" as_m 'bin/rails db:migrate | grep -q AddIndexStatusesOnLanguage'
as_m 'bin/tootctl standin post alice hallo --language de' >/dev/null
check "v4.5.14 writes and reads statuses.language" grep -q '"language":"de"' <<<"$(get 3000 /api/v1/timelines/public)"

echo "== v4.5.15-broken"
unpack v4.5.15-broken
check "its pre-deployment migration works" as_m "cd $M/releases/v4.5.15-broken && SKIP_POST_DEPLOYMENT_MIGRATIONS=true bin/rails db:migrate | grep -q AddDiscoverableToAccounts"
check "v4.5.14 still serves on that schema" grep -q '"version":"4.5.14"' <<<"$(get 3000 /api/v2/instance)"
switch v4.5.15-broken; kill -USR1 "$(systemctl show -p MainPID --value sb-mastodon-web)"; sleep 6
check "its hot restart never becomes healthy" test "$(code http://127.0.0.1:3000/health)" != 200
check "the journal says why" grep -q 'stand-in v4.5.15 is broken on purpose' <<<"$(journalctl -u sb-mastodon-web --no-pager)"
switch v4.5.14; start_web
check "rolled back: 4.5.14 serves again" wait_http http://127.0.0.1:3000/health
check "rolled back version" grep -q '"version":"4.5.14"' <<<"$(get 3000 /api/v2/instance)"

echo "== stop"
systemctl stop sb-mastodon-web sb-mastodon-sidekiq sb-mastodon-streaming
check "sidekiq stopped cleanly on SIGTERM" test "$(systemctl show -p ExecMainStatus --value sb-mastodon-sidekiq)" = 0
systemctl reset-failed sb-mastodon-web sb-mastodon-sidekiq sb-mastodon-streaming 2>/dev/null
echo "$passed passed, $failed failed"
[ $failed = 0 ]
