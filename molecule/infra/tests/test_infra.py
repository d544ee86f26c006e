"""The web host's infrastructure, checked from outside as a client would see it.

in-web runs common, PostgreSQL, Redis and nginx with a certificate that certbot obtained from pebble
(the test ACME CA on in-acme). HTTP and TLS are checked from the machine running molecule, against
the lab addresses only, with the test domains resolved by hand (the machine has no DNS for them).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from functools import cache
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))
from lab_checks import check_mode_changes, gates_open_changes

testinfra_hosts = ["in-web"]

DOMAINS = ["web.example.test", "alt.example.test"]
# Values converge.yml sets away from the role's defaults.
BODY_LIMIT = 3 * 1024 * 1024
HSTS = "max-age=31536000; includeSubDomains"
PEBBLE_API_CA = "/etc/pebble/api-ca.pem"
HOOK = "/etc/letsencrypt/renewal-hooks/deploy/fedictl-reload-nginx"
DATABASE_NAMES = ["in_social", "in_video"]  # infra_databases in molecule.yml


def _lab_host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@cache
def _database(name: str) -> dict[str, object]:
    """One item of infra_databases (molecule.yml), with its TEST-ONLY password."""
    databases = _lab_host("in-web").ansible.get_variables()["infra_databases"]
    found: dict[str, object] = next(d for d in databases if d["name"] == name)
    return found


@cache
def _address(name: str) -> str:
    address: str = _lab_host(name).ansible.get_variables()["ansible_host"]
    return address


@cache
def _pebble_root() -> str:
    """pebble's issuing root, from its management API (itself behind the throwaway API CA)."""
    api_ca = _lab_host("in-acme").file(PEBBLE_API_CA).content_string
    ctx = ssl.create_default_context(cadata=api_ca)
    conn = http.client.HTTPSConnection(_address("in-acme"), 15000, context=ctx, timeout=10)
    conn.request("GET", "/roots/0")
    answer = conn.getresponse()
    assert answer.status == 200
    return answer.read().decode()


def _https(
    domain: str, method: str = "GET", path: str = "/", body: bytes | None = None
) -> http.client.HTTPResponse:
    ctx = ssl.create_default_context(cadata=_pebble_root())
    conn = http.client.HTTPSConnection(_address("in-web"), 443, context=ctx, timeout=10)
    # Connect to the lab address; send the test domain as SNI and Host (and check it in the cert).
    sock = socket.create_connection((_address("in-web"), 443), timeout=10)
    conn.sock = ctx.wrap_socket(sock, server_hostname=domain)
    conn.request(method, path, body=body, headers={"Host": domain})
    return conn.getresponse()


def _http(domain: str, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(_address("in-web"), 80, timeout=10)
    conn.request("GET", path, headers={"Host": domain})
    return conn.getresponse()


def _firewall_possible(host: testinfra.host.Host) -> bool:
    capabilities = int(host.check_output("grep CapBnd /proc/self/status").split()[1], 16)
    return bool(capabilities >> 12 & 1)  # CAP_NET_ADMIN


def test_services_are_enabled_and_running(host: testinfra.host.Host) -> None:
    for unit in ("nginx", "certbot.timer", "postgresql", "redis-server"):
        assert host.service(unit).is_enabled, unit
        assert host.service(unit).is_running, unit


def test_a_fresh_host_gets_every_package_in_one_apt_transaction(
    host: testinfra.host.Host,
) -> None:
    """The later roles name their packages (`packages` entry points), common installs them with its
    own: apt ran once for fail2ban, PostgreSQL, Redis and nginx alike; no role installed again."""
    history = host.file("/var/log/apt/history.log").content_string
    installs = [
        {word.split("=")[0] for word in line.split(" install ", 1)[1].split()}
        for line in history.splitlines()
        if line.startswith("Commandline:") and " install " in line
    ]
    later = {"postgresql-17", "redis-server", "nginx", "certbot"}
    with_later = [names for names in installs if names & later]
    assert len(with_later) == 1, f"the later roles' packages came in {len(with_later)} apt runs"
    assert later | {"fail2ban", "nftables"} <= with_later[0]


def test_the_firewall_opens_http_and_https_through_the_common_interface(
    host: testinfra.host.Host,
) -> None:
    if not _firewall_possible(host):
        pytest.skip(
            "this lab host has no CAP_NET_ADMIN: nftables cannot load, converge.yml skipped common"
        )
    assert host.service("nftables").is_running
    ruleset = json.loads(host.check_output("nft --json list chain inet fedictl input"))["nftables"]
    comments = {item["rule"].get("comment") for item in ruleset if "rule" in item}
    assert {"http (nginx)", "https (nginx)"} <= comments
    # common_firewall_open_http is off in converge.yml: 80 and 443 came through the extra ports.
    assert "http, https" not in comments


@pytest.mark.parametrize("name", DATABASE_NAMES)
def test_each_app_database_exists_with_its_owner_and_extensions(
    host: testinfra.host.Host, name: str
) -> None:
    database = _database(name)
    with host.sudo("postgres"):
        owners = host.check_output(
            "psql -XAt -F ' ' -c %s", "SELECT datname, pg_get_userbyid(datdba) FROM pg_database"
        )
        installed = host.check_output(
            "psql -XAt -d %s -c %s", name, "SELECT extname FROM pg_extension"
        )
    assert f"{name} {database['owner']}" in owners.splitlines()
    assert set(database.get("extensions", [])) <= set(installed.split())  # type: ignore[call-overload]


@pytest.mark.parametrize("name", DATABASE_NAMES)
def test_app_password_login_works_and_a_wrong_one_fails(
    host: testinfra.host.Host, name: str
) -> None:
    database = _database(name)
    login = "PGPASSWORD=%s psql -XAt -h 127.0.0.1 -U %s -d %s -c 'SELECT current_user'"
    ok = host.run(login, database["password"], database["owner"], name)
    assert ok.rc == 0, ok.stderr
    assert ok.stdout.strip() == database["owner"]
    wrong = host.run(login, "not-the-password", database["owner"], name)
    assert wrong.rc != 0
    assert "password authentication failed" in wrong.stderr


def test_redis_refuses_clients_without_the_password(host: testinfra.host.Host) -> None:
    anonymous = host.run("redis-cli -h 127.0.0.1 PING")
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr
    password = host.ansible.get_variables()["infra_redis_password"]
    authed = host.run("REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 PING", password)
    assert authed.stdout.strip() == "PONG"


@pytest.mark.parametrize("domain", DOMAINS)
def test_https_serves_a_pebble_certificate_for_the_site(domain: str) -> None:
    ctx = ssl.create_default_context(cadata=_pebble_root())  # chain and host name are verified
    sock = socket.create_connection((_address("in-web"), 443), timeout=10)
    with ctx.wrap_socket(sock, server_hostname=domain) as tls:
        cert = tls.getpeercert()
        version = tls.version()
    names = sorted(value for kind, value in cert["subjectAltName"] if kind == "DNS")
    assert names == sorted(DOMAINS)
    issuer = dict(item[0] for item in cert["issuer"])
    assert "Pebble" in issuer["commonName"]
    assert version in ("TLSv1.2", "TLSv1.3")


def test_the_certificate_is_not_trusted_without_pebbles_root() -> None:
    ctx = ssl.create_default_context()
    sock = socket.create_connection((_address("in-web"), 443), timeout=10)
    with sock, pytest.raises(ssl.SSLCertVerificationError):
        ctx.wrap_socket(sock, server_hostname=DOMAINS[0])


def test_unknown_host_names_get_no_certificate() -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection((_address("in-web"), 443), timeout=10)
    with sock, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(sock, server_hostname="unknown.example.test")


def test_unknown_host_names_get_no_http_answer() -> None:
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        _http("unknown.example.test", "/")


@pytest.mark.parametrize("domain", DOMAINS)
def test_http_redirects_to_https(domain: str) -> None:
    answer = _http(domain, "/some/page?q=1")
    assert answer.status == 301
    assert answer.getheader("Location") == f"https://{domain}/some/page?q=1"


def test_the_acme_challenge_path_is_served_over_http(host: testinfra.host.Host) -> None:
    token = uuid.uuid4().hex
    path = f"/var/www/acme/.well-known/acme-challenge/{token}"
    host.run_test("printf %s " + token + " > " + path)
    try:
        answer = _http(DOMAINS[1], f"/.well-known/acme-challenge/{token}")
        assert answer.status == 200
        assert answer.read().decode() == token
    finally:
        host.run_test("rm -f " + path)
    assert _http(DOMAINS[1], "/.well-known/acme-challenge/missing").status == 404


def test_https_answers_with_hsts_security_headers_and_no_version() -> None:
    answer = _https(DOMAINS[0])
    assert answer.status == 200
    assert answer.read() == b"fedictl infra test site\n"
    assert answer.getheader("Strict-Transport-Security") == HSTS
    assert answer.getheader("X-Content-Type-Options") == "nosniff"
    assert answer.getheader("Referrer-Policy") == "same-origin"
    assert answer.getheader("Server") == "nginx"


def test_the_body_size_limit_is_the_configured_one() -> None:
    assert _https(DOMAINS[0], "POST", "/", b"x" * (BODY_LIMIT + 1024)).status == 413
    # Under the limit the request reaches the test site, which answers every method itself.
    assert _https(DOMAINS[0], "POST", "/", b"x" * (BODY_LIMIT - 1024)).status == 200


def test_renewals_reload_nginx_and_trust_the_acme_ca(host: testinfra.host.Host) -> None:
    hook = host.file(HOOK)
    assert hook.is_file and hook.mode == 0o755 and hook.user == "root"
    pid_before = host.check_output("systemctl show -p MainPID --value nginx")
    host.run_test(HOOK)  # tests the configuration, then reloads
    assert host.service("nginx").is_running
    assert (
        host.check_output("systemctl show -p MainPID --value nginx") == pid_before
    )  # reload, not restart
    environment = host.check_output("systemctl show -p Environment --value certbot.service")
    assert "REQUESTS_CA_BUNDLE=/etc/letsencrypt/fedictl-acme-ca.pem" in environment
    # A real renewal round trip against pebble, without saving the result. --server is needed: with
    # --dry-run alone certbot swaps in Let's Encrypt's staging directory (outside the lab).
    dry_run = host.run(
        "REQUESTS_CA_BUNDLE=/etc/letsencrypt/fedictl-acme-ca.pem certbot renew --dry-run"
        " --no-random-sleep-on-renew --server https://in-acme:14000/dir"
    )
    assert dry_run.rc == 0, dry_run.stderr


@pytest.mark.skipif(
    shutil.which("testssl") is None, reason="testssl is not installed (scripts/setup adds it)"
)
def test_testssl_finds_nothing_high_and_only_tls12_and_13(tmp_path: Path) -> None:
    root = tmp_path / "pebble-root.pem"
    root.write_text(_pebble_root())
    report = tmp_path / "testssl.json"
    # --ip and --nodns none: no DNS lookup at all, the scan goes to the lab address only.
    argv = ["testssl", "--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none",
            "--ip", _address("in-web"), "--add-ca", str(root), "--jsonfile-pretty", str(report),
            f"{DOMAINS[0]}:443"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert report.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(report.read_text())["scanResult"][0]
    findings = [f for section in result.values() if isinstance(section, list) for f in section]
    by_id = {f["id"]: f for f in findings}

    severe = [f for f in findings if f["severity"] in ("HIGH", "CRITICAL")]
    assert severe == []
    offered = {
        p: by_id[p]["finding"] for p in ("SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3")
    }
    assert [p for p, finding in offered.items() if finding.startswith("offered")] == [
        "TLS1_2",
        "TLS1_3",
    ], offered
    assert by_id["HSTS_time"]["severity"] == "OK"
    assert "31536000 seconds" in by_id["HSTS_time"]["finding"]
    assert by_id["HSTS_subdomains"]["finding"] == "includes subdomains"
    assert by_id["cert_chain_of_trust"]["severity"] == "OK"


def test_check_mode_on_the_converged_hosts_changes_nothing() -> None:
    stats = check_mode_changes()
    # converge.yml touches in-web only (pebble's CA certificate is read on this machine).
    assert {name: s["changed"] for name, s in stats.items()} == {"in-web": 0}
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values())


def test_idempotent_with_the_gates_open() -> None:
    stats = gates_open_changes()
    assert {name: s["changed"] for name, s in stats.items()} == {"in-web": 0}, stats
    assert all(s["failures"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
