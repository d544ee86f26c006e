#!/usr/bin/env bash
# Checks the stand-in Mastodon release's media uploads (POST /api/v2/media, GET /api/v1/media/:id)
# on a real Debian 13 lab host: storage on the file system and through an S3 API (Debian's moto
# server, TEST-ONLY), upstream's URL rules, the AWS SigV4 signer, and the errors.
#
#   tests/standin/lab_check_mastodon_s3.sh HOST     (from the repository, as root; HOST must be a
#                                                    running `fedictl lab` host, e.g. sa-1)
#
# Builds the v4.5.13 archive, copies it with this script to HOST and runs it there (--on-host):
# installs postgresql, python3-moto, python3-flask-cors, python3-boto3 and
# mastodon/debian-packages.txt; makes a database and two users; starts three moto servers on
# 127.0.0.1 (5000: moto's default, which checks no signature at all; 5001: with
# INITIAL_NO_AUTH_ACTION_COUNT, which checks SigV4 signatures against keys made in its IAM;
# 5443: https with a certificate from a test CA, as s3.standin.test) and runs the stand-in's web
# process with one set of S3 settings per check. Ends with "N passed, N failed"; exit 1 when a check
# failed. The host is left as it is: stop it with `fedictl lab down HOST`.
set -uo pipefail

if [ "${1:-}" != --on-host ]; then
  host=${1:?usage: $0 LAB_HOST}
  here=$(cd "$(dirname "$0")" && pwd)
  fedictl=${FEDICTL:-$here/../../.venv/bin/fedictl}
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  python3 "$here/build_mastodon_standin.py" v4.5.13 --out "$out" >/dev/null || exit 1
  cp "$here/mastodon/debian-packages.txt" "$here/lab_check_mastodon_s3.sh" "$out/"
  tar -C "$out" -c . | "$fedictl" lab ssh "$host" -- 'rm -rf /root/standin-s3 && mkdir -p /root/standin-s3 && tar -C /root/standin-s3 -x' || exit 1
  exec "$fedictl" lab ssh "$host" -- 'bash /root/standin-s3/lab_check_mastodon_s3.sh --on-host'
fi

# ---- on the lab host (root) ----
A=/root/standin-s3
M=/home/mastodon
W=$A/work
DB_PASS='pg-Pass$1 x' # TEST-ONLY
CA_FILE=/usr/local/share/ca-certificates/sa-standin-s3-test-ca.crt
passed=0; failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
as_m() { su mastodon -s /bin/bash -c "cd $M/live && export RAILS_ENV=production && $1"; }
wait_http() { for _ in $(seq 100); do curl -s -m 1 -o /dev/null "$1" && return 0; sleep 0.2; done; return 1; }
# Waits for a port without an HTTP request (the signature-checking moto counts every request).
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; return 1; }
rows() { su postgres -c "psql -Atc 'SELECT count(*) FROM media_attachments' mastodon_production"; }
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# The path of a URL without its leading slash (the alias rule's object key, or bucket/key).
url_path() { python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).path[1:])' "$1"; }
# web SETTING...: (re)start the web process with these settings on top of .env.production (a file
# read by systemd, like the role's; the environment wins over dotenv).
web() {
  systemctl stop sa-mastodon-web 2>/dev/null; systemctl reset-failed sa-mastodon-web 2>/dev/null
  printf '%s\n' "$@" >$W/web-case.env
  systemd-run -q --unit=sa-mastodon-web --uid=mastodon --gid=mastodon -p WorkingDirectory=$M/live \
    -p EnvironmentFile=$W/web-case.env -E RAILS_ENV=production -E PORT=3000 -E WEB_CONCURRENCY=1 \
    -E PWD=$M/live -E BUNDLE_GEMFILE=$M/live/Gemfile /usr/bin/bundle exec puma -C config/puma.rb
  wait_http http://127.0.0.1:3000/health
}
journal() { journalctl --no-pager -o cat _SYSTEMD_INVOCATION_ID="$(systemctl show -p InvocationID --value sa-mastodon-web)"; }
# api METHOD PATH [curl args...]: sets $status and $body (an https-proxied request for the instance).
api() {
  local method=$1 path=$2 out; shift 2
  out=$(curl -sS -m 30 -X "$method" -H 'Host: social.standin.test' -H 'X-Forwarded-Proto: https' \
    -w '\n%{http_code}' "$@" "http://127.0.0.1:3000$path")
  status=${out##*$'\n'}; body=${out%$'\n'*}
}
upload() { api POST /api/v2/media -H "Authorization: Bearer ${3:-$TOKEN}" -F "file=@$1;type=$2"; }
S3_BASE=(S3_ENABLED=true S3_BUCKET=media AWS_ACCESS_KEY_ID=TESTONLYACCESSKEY AWS_SECRET_ACCESS_KEY=TESTONLY-secret)
MOTO=http://127.0.0.1:5000

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && xargs -a $A/debian-packages.txt apt-get install -y -qq postgresql curl openssl \
  python3-moto python3-flask-cors python3-boto3 >/tmp/apt.log 2>&1
check "apt-get install postgresql python3-moto python3-flask-cors python3-boto3 + debian-packages.txt" test $? -eq 0
echo "ruby $(ruby -e 'print RUBY_VERSION'), rack $(ruby -rrack -e 'print Rack.release'), moto $(python3 -c 'import moto; print(moto.__version__)')"

rm -rf $W && mkdir -p $W && tar -xzf $A/mastodon-standin-v4.5.13.tar.gz -C $W --one-top-level=release
head -c 200000 /dev/urandom >$W/photo.png
head -c 1000 /dev/urandom >$W/clip.mp4
head -c $((16 * 1024 * 1024 + 1)) /dev/zero >$W/big.jpg
printf 'not media\n' >$W/notes.txt

echo "== the SigV4 signer against AWS's documented S3 examples (Authorization header, single chunk)"
out=$(ruby -r$W/release/lib/standin/s3 -e '
  t = Time.utc(2013, 5, 24)
  s = StandIn::S3::Signer.new(access_key_id: "AKIAIOSFODNN7EXAMPLE",
                              secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", region: "us-east-1")
  body = Digest::SHA256.hexdigest("Welcome to Amazon S3.")
  put = s.sign(method: "PUT", path: "/" + StandIn::S3.encode_path("test$file.text"), time: t, payload_hash: body,
               headers: { "Date" => "Fri, 24 May 2013 00:00:00 GMT", "Host" => "examplebucket.s3.amazonaws.com",
                          "x-amz-content-sha256" => body, "x-amz-date" => "20130524T000000Z",
                          "x-amz-storage-class" => "REDUCED_REDUNDANCY" })
  empty = Digest::SHA256.hexdigest("")
  get = s.sign(method: "GET", path: "/test.txt", time: t, payload_hash: empty,
               headers: { "Host" => "examplebucket.s3.amazonaws.com", "Range" => "bytes=0-9",
                          "x-amz-content-sha256" => empty, "x-amz-date" => "20130524T000000Z" })
  puts put.signature, Digest::SHA256.hexdigest(put.canonical_request), get.authorization' 2>&1)
echo "$out"
check "PUT Object example: signature 98ad7217..." grep -qx 98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd <<<"$out"
check "PUT Object example: canonical request hash 9e0e90d9..." grep -qx 9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d <<<"$out"
check "GET Object example: the whole Authorization header" grep -qx 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41' <<<"$out"

echo "== PostgreSQL, the release, two users"
id mastodon >/dev/null 2>&1 || adduser --disabled-password --gecos '' mastodon >/dev/null
systemctl stop sa-mastodon-web sa-moto sa-moto-auth sa-moto-tls 2>/dev/null
systemctl reset-failed sa-mastodon-web sa-moto sa-moto-auth sa-moto-tls 2>/dev/null
rm -f $CA_FILE /tmp/RackMultipart* && update-ca-certificates --fresh >/dev/null 2>&1
su postgres -c "psql -qc 'DROP DATABASE IF EXISTS mastodon_production'"
su postgres -c "psql -qc 'DROP ROLE IF EXISTS mastodon'"
echo "CREATE ROLE mastodon LOGIN PASSWORD '$DB_PASS'" | su postgres -c 'psql -q'
su postgres -c "psql -qc 'CREATE DATABASE mastodon_production OWNER mastodon'"
rm -rf $M/releases $M/shared $M/live
mkdir -p $M/releases/v4.5.13 $M/shared/public/system
tar -xzf $A/mastodon-standin-v4.5.13.tar.gz -C $M/releases/v4.5.13 --no-same-owner
ln -sfn $M/shared/.env.production $M/releases/v4.5.13/.env.production
ln -sfn $M/shared/public/system $M/releases/v4.5.13/public/system
ln -sfn $M/releases/v4.5.13 $M/live
cat >$M/shared/.env.production <<ENV
LOCAL_DOMAIN=social.standin.test
WEB_DOMAIN=www.standin.test
DB_HOST=127.0.0.1
DB_NAME=mastodon_production
DB_USER=mastodon
DB_PASS='$DB_PASS'
SECRET_KEY_BASE=$(printf 'cd%.0s' $(seq 64))
ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY=AAAAbbbbCCCCddddEEEEffffGGGGhhhh
ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT=IIIIjjjjKKKKllllMMMMnnnnOOOOpppp
ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY=QQQQrrrrSSSSttttUUUUvvvvWWWWxxxx
ENV
chown -R -h mastodon:mastodon $M/shared $M/releases && chmod 600 $M/shared/.env.production
check "db:prepare" as_m 'bin/rails db:prepare >/dev/null'
as_m 'bin/tootctl accounts create alice --email alice@example.com --confirmed --role Owner --approve' >/dev/null
as_m 'bin/tootctl accounts create bob --email bob@example.com' >/dev/null # unconfirmed, not approved
TOKEN=$(as_m 'bin/tootctl standin token alice')
BOB=$(as_m 'bin/tootctl standin token bob')
check "tootctl standin token prints a 43-character token" grep -Eqx '[A-Za-z0-9_-]{43}' <<<"$TOKEN"
# shellcheck disable=SC2016 # expanded by the mastodon user's shell
check "tootctl standin token for an unknown user exits 1" as_m 'out=$(bin/tootctl standin token nobody 2>&1); test $? = 1 && grep -q "No user with such username" <<<"$out"'

echo "== moto servers (TEST-ONLY)"
grep -q s3.standin.test /etc/hosts || echo '127.0.0.1 s3.standin.test media.s3.standin.test' >>/etc/hosts
systemd-run -q --unit=sa-moto python3 -m moto.server -H 127.0.0.1 -p 5000
systemd-run -q --unit=sa-moto-auth -E INITIAL_NO_AUTH_ACTION_COUNT=3 python3 -m moto.server -H 127.0.0.1 -p 5001
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout $W/ca.key -out $W/ca.crt \
  -subj '/CN=fedictl TEST-ONLY CA (lab_check_mastodon_s3.sh)' 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout $W/s3.key -out $W/s3.csr -subj /CN=s3.standin.test 2>/dev/null
openssl x509 -req -in $W/s3.csr -CA $W/ca.crt -CAkey $W/ca.key -CAcreateserial -days 2 -out $W/s3.crt \
  -extfile <(printf 'subjectAltName=DNS:s3.standin.test\nextendedKeyUsage=serverAuth\n') 2>/dev/null
# moto would take the first label of a host name as a bucket (virtual-hosted style) without this.
systemd-run -q --unit=sa-moto-tls -E S3_IGNORE_SUBDOMAIN_BUCKETNAME=true \
  python3 -m moto.server -H 127.0.0.1 -p 5443 -c $W/s3.crt -k $W/s3.key
check "moto answers" wait_http $MOTO/
check "the signature-checking moto listens" wait_port 5001
check "the https moto listens" wait_port 5443
check "bucket 'media' created on moto" test "$(curl -s -o /dev/null -w '%{http_code}' -X PUT $MOTO/media)" = 200
curl -s -o /dev/null --cacert $W/ca.crt -X PUT https://s3.standin.test:5443/media
# The signature-checking moto: its first 3 calls are free (make a user, its policy and a key).
python3 - >$W/auth-keys <<'PY'
import json
import boto3
ep = "http://127.0.0.1:5001"
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
iam.create_user(UserName="standin")
iam.put_user_policy(UserName="standin", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="standin")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket="media")
print(key["AccessKeyId"], key["SecretAccessKey"])
PY
read -r AUTH_ID AUTH_SECRET <$W/auth-keys
check "signature-checking moto: IAM key made, bucket created" test -n "${AUTH_SECRET:-}"

echo "== authentication and validation (file system storage)"
check "web starts without S3 settings" web
api POST /api/v2/media -F "file=@$W/photo.png;type=image/png"
check "no token -> 401 The access token is invalid" test "$status $body" = '401 {"error":"The access token is invalid"}'
upload $W/photo.png image/png "$(printf 'A%.0s' $(seq 43))"
check "a wrong token -> 401" test "$status" = 401
upload $W/photo.png image/png "$BOB"
check "an unconfirmed user's token -> 403 (upstream's message)" test "$status $body" = '403 {"error":"Your login is missing a confirmed e-mail address"}'
api POST /api/v2/media -H "Authorization: Bearer $TOKEN" -F description=nothing
check "no file -> 422 File can't be blank" test "$status $body" = "422 {\"error\":\"Validation failed: File can't be blank\"}"
upload $W/notes.txt text/plain
check "text/plain -> 422 content type is invalid" test "$status $body" = '422 {"error":"Validation failed: File content type is invalid, File is invalid"}'
upload $W/big.jpg image/jpeg
check "16 MiB + 1 byte image -> 422 (upstream's limit)" test "$status $body" = '422 {"error":"Validation failed: File file size must be less than 16 MB"}'
check "no row was written by the refused uploads" test "$(rows)" = 0
check "plain http POST -> 307 (force_ssl)" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Host: social.standin.test' http://127.0.0.1:3000/api/v2/media)" = 307

echo "== file system storage (PAPERCLIP_ROOT_PATH)"
upload $W/photo.png image/png
url=$(json url <<<"$body")
echo "$status $body"
check "upload -> 200, type image, id 1" test "$status $(json type <<<"$body") $(json id <<<"$body")" = '200 image 1'
check "URL https://WEB_DOMAIN/system/media_attachments/files/000/000/001/original/<16 hex>.png" \
  grep -Eqx 'https://www\.standin\.test/system/media_attachments/files/000/000/001/original/[0-9a-f]{16}\.png' <<<"$url"
check "the file under public/system holds the same bytes" cmp -s $W/photo.png "$M/shared/public/system/${url#https://www.standin.test/system/}"
first=$body
api GET /api/v1/media/1 -H "Authorization: Bearer $TOKEN"
check "GET /api/v1/media/1 -> the same JSON" test "$status $body" = "200 $first"
api GET /api/v1/media/999 -H "Authorization: Bearer $TOKEN"
check "GET /api/v1/media/999 -> 404" test "$status $body" = '404 {"error":"Record not found"}'
api GET /api/v1/media/1
check "GET /api/v1/media/1 without a token -> 401" test "$status" = 401
web CDN_HOST=https://cdn.standin.test
api GET /api/v1/media/1 -H "Authorization: Bearer $TOKEN"
check "CDN_HOST: the same file's URL on the CDN host" grep -Eqx 'https://cdn\.standin\.test/system/media_attachments/files/000/000/001/original/[0-9a-f]{16}\.png' <<<"$(json url <<<"$body")"
upload $W/clip.mp4 application/octet-stream
check "application/octet-stream: type from the extension (video, .mp4)" test "$status $(json type <<<"$body") ${body##*.mp4\"}" = '200 video ,"preview_url":null,"remote_url":null,"preview_remote_url":null,"text_url":null,"meta":{},"description":null,"blurhash":null}'

# s3_case NAME URL_REGEX: upload photo.png; check the answer, the URL against URL_REGEX (KEY stands
# for the object key) and sets $key.
s3_case() {
  local name=$1 regex=$2 before
  before=$(rows)
  upload $W/photo.png image/png
  url=$(json url <<<"$body" 2>/dev/null)
  id=$(json id <<<"$body" 2>/dev/null)
  key="media_attachments/files/$(printf '%09d' "${id:-0}" | sed -E 's#(...)(...)(...)#\1/\2/\3#')/original/${url##*/}"
  echo "$status $url"
  check "$name: 200 and a row" test "$status $(rows)" = "200 $((before + 1))"
  check "$name: URL ${regex//\\/}" grep -Eqx "${regex//KEY/${key//./\\.}}" <<<"$url"
}
same_bytes() { curl -sf -o $W/got "$@" && cmp -s $W/photo.png $W/got; }

echo "== S3 rule 1: S3_ALIAS_HOST -> <S3_PROTOCOL>://<alias>/<key>"
web "${S3_BASE[@]}" S3_ENDPOINT=$MOTO S3_ALIAS_HOST=media.standin.test
s3_case alias 'https://media\.standin\.test/KEY'
check "alias: URL path = the object key" test "$(url_path "$url")" = "$key"
check "alias: anonymous GET of <endpoint>/<bucket>/<key> from moto = the same bytes" same_bytes "$MOTO/media/$key"
headers=$(curl -sI "$MOTO/media/$key")
check "alias: stored with Content-Type image/png" grep -qi '^content-type: image/png' <<<"$headers"
check "alias: stored with paperclip's Cache-Control" grep -qi '^cache-control: public, max-age=315576000, immutable' <<<"$headers"
api GET "/api/v1/media/$id" -H "Authorization: Bearer $TOKEN"
check "alias: GET /api/v1/media/$id gives the same URL" test "$(json url <<<"$body")" = "$url"
check "the journal names where it stored the object" grep -q "media attachment $id stored at $MOTO/media/$key" <<<"$(journal)"
web "${S3_BASE[@]}" S3_ENDPOINT=$MOTO S3_ALIAS_HOST=media.standin.test S3_PROTOCOL=
api GET "/api/v1/media/$id" -H "Authorization: Bearer $TOKEN"
check "S3_PROTOCOL='': //alias/key, joined to the instance's https" test "$(json url <<<"$body")" = "https://media.standin.test/$key"

echo "== S3 rule 2: S3_HOSTNAME -> <S3_PROTOCOL>://<hostname>/<bucket>/<key>"
web "${S3_BASE[@]}" S3_ENDPOINT=$MOTO S3_HOSTNAME=files.standin.test S3_PROTOCOL=http S3_STORAGE_CLASS=STANDARD_IA
s3_case hostname 'http://files\.standin\.test/media/KEY'
check "hostname: URL path = <bucket>/<key>" test "$(url_path "$url")" = "media/$key"
check "hostname: GET from moto = the same bytes" same_bytes "$MOTO/media/$key"
check "hostname: S3_STORAGE_CLASS sent" grep -qi '^x-amz-storage-class: STANDARD_IA' <<<"$(curl -sI "$MOTO/media/$key")"

echo "== S3 rule 3: S3_ENDPOINT alone -> still s3-<region>.amazonaws.com/<bucket>/<key> (upstream's :s3_path_url)"
web "${S3_BASE[@]}" S3_ENDPOINT=$MOTO
s3_case endpoint 'https://s3-us-east-1\.amazonaws\.com/media/KEY'
check "endpoint: the object itself went to <endpoint>/<bucket>/<key>" same_bytes "$MOTO/media/$key"

echo "== S3 rule 4: S3_REGION, no bucket yet -> s3-<region>.amazonaws.com; the bucket is created (paperclip's NoSuchBucket retry)"
web S3_ENABLED=true S3_BUCKET=media-eu AWS_ACCESS_KEY_ID=TESTONLYACCESSKEY AWS_SECRET_ACCESS_KEY=TESTONLY-secret S3_ENDPOINT=$MOTO S3_REGION=eu-west-3
s3_case region 'https://s3-eu-west-3\.amazonaws\.com/media-eu/KEY'
check "region: bucket media-eu created in eu-west-3" grep -q eu-west-3 <<<"$(curl -s "$MOTO/media-eu?location")"
check "region: GET from moto = the same bytes" same_bytes "$MOTO/media-eu/$key"

echo "== S3_PERMISSION='' sends no ACL (private object), S3_OVERRIDE_PATH_STYLE=true (virtual-hosted)"
web "${S3_BASE[@]}" S3_ENDPOINT=http://s3.standin.test:5000 S3_OVERRIDE_PATH_STYLE=true S3_PERMISSION= S3_ALIAS_HOST=media.standin.test
s3_case private 'https://media\.standin\.test/KEY'
check "private: the journal shows the virtual-hosted PUT" grep -q "stored at http://media.s3.standin.test:5000/$key" <<<"$(journal)"
check "private: anonymous GET -> 403" test "$(curl -s -o /dev/null -w '%{http_code}' "$MOTO/media/$key")" = 403
check "private: signed GET = the same bytes" same_bytes --aws-sigv4 aws:amz:us-east-1:s3 --user TESTONLYACCESSKEY:x "$MOTO/media/$key"

echo "== signatures: moto's default server accepts any secret; the signature-checking one does not"
web S3_ENABLED=true S3_BUCKET=media AWS_ACCESS_KEY_ID=TESTONLYACCESSKEY AWS_SECRET_ACCESS_KEY=wrong-secret S3_ENDPOINT=$MOTO
upload $W/photo.png image/png
check "default moto: a wrong secret is accepted (200) - moto proves the request, not the key" test "$status" = 200
web S3_ENABLED=true S3_BUCKET=media AWS_ACCESS_KEY_ID="$AUTH_ID" AWS_SECRET_ACCESS_KEY="$AUTH_SECRET" S3_ENDPOINT=http://127.0.0.1:5001
s3_case signed 'https://s3-us-east-1\.amazonaws\.com/media/KEY'
python3 - "$AUTH_ID" "$AUTH_SECRET" "$key" >$W/got <<'PY'
import sys
import boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:5001", region_name="us-east-1",
                  aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2])
sys.stdout.buffer.write(s3.get_object(Bucket="media", Key=sys.argv[3])["Body"].read())
PY
check "signed: the signature-checking moto stored the same bytes" cmp -s $W/photo.png $W/got
web S3_ENABLED=true S3_BUCKET=media AWS_ACCESS_KEY_ID="$AUTH_ID" AWS_SECRET_ACCESS_KEY=wrong-secret S3_ENDPOINT=http://127.0.0.1:5001
before=$(rows)
upload $W/photo.png image/png
check "wrong secret -> 500 (aws-sdk's errors are not rescued upstream)" test "$status" = 500
check "wrong secret: no row left behind" test "$(rows)" = "$before"
check "wrong secret: the journal says why" grep -q '\[stand-in web\] POST /api/v2/media -> 500 StandIn::S3::Error: PUT http://127.0.0.1:5001/media/media_attachments/files/.* -> 403 SignatureDoesNotMatch' <<<"$(journal)"
journal | grep -m1 SignatureDoesNotMatch

echo "== unreachable storage and https with the system trust store"
web "${S3_BASE[@]}" S3_ENDPOINT=http://127.0.0.1:5999
upload $W/photo.png image/png
check "nothing listening -> 503 (upstream's NetworkingError answer)" test "$status $body" = '503 {"error":"There was a temporary problem serving your request, please try again"}'
check "unreachable: the journal says why" grep -q '\[stand-in web\] Storage server error: PUT http://127.0.0.1:5999/.*ECONNREFUSED' <<<"$(journal)"
web "${S3_BASE[@]}" S3_ENDPOINT=https://s3.standin.test:5443 S3_ALIAS_HOST=media.standin.test
upload $W/photo.png image/png
check "https, test CA not trusted -> 503" test "$status" = 503
check "https, untrusted: the journal says certificate verify failed" grep -q 'Storage server error: PUT https://s3.standin.test:5443/.*certificate verify failed' <<<"$(journal)"
journal | grep -m1 'certificate verify failed'
cp $W/ca.crt $CA_FILE && update-ca-certificates >/dev/null 2>&1
web "${S3_BASE[@]}" S3_ENDPOINT=https://s3.standin.test:5443 S3_ALIAS_HOST=media.standin.test
s3_case https 'https://media\.standin\.test/KEY'
check "https: GET over https (test CA) = the same bytes" same_bytes --cacert $W/ca.crt "https://s3.standin.test:5443/media/$key"

check "no uploaded part left in /tmp (the tempfiles are closed as Rack::TempfileReaper does)" test -z "$(find /tmp -maxdepth 1 -name 'RackMultipart*')"

echo "== stop"
systemctl stop sa-mastodon-web sa-moto sa-moto-auth sa-moto-tls
rm -f $CA_FILE && update-ca-certificates --fresh >/dev/null 2>&1
echo "$passed passed, $failed failed"
[ $failed = 0 ]
