"""`fedictl check` end to end on a real Debian 13 lab host: real nginx, systemd, Redis and SSH.

The host gets Debian's nginx serving the saved Mastodon answers (tests/data/check/) with a
certificate from the test's throwaway CA, Debian's redis-server with the inventory's Redis
password, stand-in `mastodon-*` units (each `sleep infinity`; the app itself is the Mastodon
scenario's business) and a backup status file. The inventory comes from `fedictl init` pointed at
the host. First everything is OK (exit 0); then a unit is stopped, port 80 stops redirecting, the
Sidekiq queue grows and the expiry threshold is set above the certificate's life: each shows up
with its status and hint.

What this does not cover, and where it is covered: the real Mastodon app behind nginx (the
Mastodon molecule scenario, run `fedictl check --ca-file <pebble root> --resolve ...` there) and
a pebble-issued certificate (the same scenario).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_check_fixtures import (
    CA,
    REPO,
    Inventory,
    app_routes,
    by_check,
    report,
    write_inventory,
)

from fedictl import vault
from fedictl.lab import Host, Lab

CAN_BOOT = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng")
)
pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not CAN_BOOT, reason="needs root and the lab's tools"),
]
NAME = "ck-web"
DOMAIN = "social.example.test"
VENV_BIN = str(Path(sys.executable).parent)

UNIT = """[Unit]
Description=fedictl check test stand-in for %n
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


def nginx_site(redirect: bool) -> str:
    """The Mastodon answers as nginx serves them, each path with the app's content type."""
    locations = []
    for path, route in app_routes("mastodon", DOMAIN).items():
        name = path.split("?", 1)[0]
        if name == "/":
            continue
        file = "/var/www/check" + name.replace("/", "_")
        content_type = route.content_type.replace('"', "")
        locations.append(
            f"    location = {name} {{\n"
            f'        default_type "{content_type}";\n'
            f"        alias {file};\n    }}\n"
        )
    port80 = "return 301 https://$host$request_uri;" if redirect else "return 200 'plain';"
    return (
        f"server {{\n    listen 80;\n    server_name {DOMAIN};\n    location / {{ {port80} }}\n}}\n"
        f"server {{\n    listen 443 ssl;\n    http2 on;\n    server_name {DOMAIN};\n"
        "    ssl_certificate /etc/nginx/check.pem;\n    ssl_certificate_key /etc/nginx/check.key;\n"
        "    location = / { return 200 'instance'; }\n" + "".join(locations) + "}\n"
    )


class LabHost:
    def __init__(self, lab: Lab, host: Host) -> None:
        self.lab = lab
        self.host = host

    def run(self, script: str, stdin: str = "") -> str:
        done = subprocess.run(
            # ssh hands the remote shell one string: quote the script as one word
            self.lab.ssh_argv(
                self.host.name, [shlex.join(["bash", "-euo", "pipefail", "-c", script])]
            ),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def put(self, path: str, content: str | bytes, mode: str = "0644") -> None:
        text = content.decode() if isinstance(content, bytes) else content
        self.run(f"install -D -m {mode} /dev/stdin {path}", stdin=text)


@pytest.fixture(scope="module")
def lab_host() -> Iterator[LabHost]:
    lab = Lab()
    (booted,) = lab.up([NAME])
    try:
        yield LabHost(lab, booted)
    finally:
        lab.down([NAME])


@pytest.fixture(scope="module")
def setup(lab_host: LabHost, tmp_path_factory: pytest.TempPathFactory) -> tuple[Inventory, CA]:
    base = tmp_path_factory.mktemp("lab")
    answers = yaml.safe_load((REPO / "examples" / "answers.yml").read_text())
    answers["apps"] = {"mastodon": {"local_domain": DOMAIN}}
    host = lab_host.host
    answers["servers"] = [
        {
            "name": host.name,
            "address": host.address,
            "user": host.user,
            "port": host.port,
            "identity_file": host.identity_file,
            "host_key_checking": False,
        }
    ]
    inv = write_inventory(base / "inv", answers)
    env = dict(inv.env)
    env["PATH"] = os.pathsep.join([VENV_BIN, os.environ.get("PATH", "")])
    inv = Inventory(inv.path, inv.password, env)
    secrets = vault.read_vault(
        inv.path / "group_vars/all/vault.yml", vault.load_secret(inv.password)
    )
    ca = CA(base / "ca")
    cert, key = ca.issue([DOMAIN], days_left=90)

    lab_host.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq nginx redis-server"
    )
    lab_host.put("/etc/nginx/check.pem", cert.read_bytes())
    lab_host.put("/etc/nginx/check.key", key.read_bytes(), "0600")
    for path, route in app_routes("mastodon", DOMAIN).items():
        name = path.split("?", 1)[0]
        if name != "/":
            lab_host.put("/var/www/check" + name.replace("/", "_"), route.body)
    lab_host.put("/etc/nginx/sites-enabled/check", nginx_site(redirect=True))
    for unit in ("mastodon-web.service", "mastodon-sidekiq.service", "mastodon-streaming@.service"):
        lab_host.put(f"/etc/systemd/system/{unit}", UNIT)
    lab_host.run(
        "rm -f /etc/nginx/sites-enabled/default && nginx -t -q && systemctl reload-or-restart nginx"
        " && systemctl daemon-reload"
        " && systemctl start mastodon-web mastodon-sidekiq mastodon-streaming@4000"
    )
    # requirepass from the vault, as the redis role sets it; the password travels on stdin.
    lab_host.run(
        "read -r pw; printf 'requirepass %s\\n' \"$pw\" >> /etc/redis/redis.conf"
        " && systemctl restart redis-server",
        stdin=str(secrets["vault_redis_password"]) + "\n",
    )
    lab_host.run(
        "read -r pw; export REDISCLI_AUTH=$pw; redis-cli -n 1 RPUSH queue:default a b c >/dev/null"
        " && redis-cli -n 1 ZADD retry 1 x 2 y >/dev/null"
        " && redis-cli -n 1 ZADD dead 1 z >/dev/null",
        stdin=str(secrets["vault_redis_password"]) + "\n",
    )
    finished = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"host": NAME, "apps": {"mastodon": {"last_success": finished, "last_error": None}}}
    lab_host.put("/var/lib/fedictl/backup/status.json", json.dumps(status))
    return inv, ca


def run_check(inv: Inventory, ca: CA, host: Host, *args: str) -> tuple[int, dict[str, Any], str]:
    result = inv.check(
        "--json", "--ca-file", str(ca.path), "--resolve", f"{DOMAIN}:{host.address}", *args
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, report(result), result.output


def test_all_ok_on_real_nginx_systemd_and_redis(
    setup: tuple[Inventory, CA], lab_host: LabHost
) -> None:
    inv, ca = setup
    lab_host.run(": > /var/log/nginx/access.log")
    code, data, output = run_check(inv, ca, lab_host.host)
    results = by_check(data)
    assert code == 0, output
    # nginx with `http2 on` (the nginx role's default): every HTTPS check went over HTTP/2
    requests = lab_host.run("cat /var/log/nginx/access.log").splitlines()
    assert sum('HTTP/2.0"' in line for line in requests) == 8, requests
    assert sum('HTTP/1.1"' in line for line in requests) == 1, requests  # port 80
    assert set(results) == {
        "dns", "http-redirect", "https", "tls", "tls-expiry", "health", "streaming", "api",
        "release", "nodeinfo", "webfinger", "actor", "units@ck-web", "disk@ck-web",
        "backup@ck-web", "sidekiq@ck-web",
    }  # fmt: skip
    assert results["units@ck-web"]["value"] == (
        "active: mastodon-web, mastodon-sidekiq, mastodon-streaming@4000, nginx"
    )
    assert results["sidekiq@ck-web"]["value"] == "retry 2, dead 1, queue:default 3"
    assert results["backup@ck-web"]["value"].startswith("last success 2.0 h ago")
    assert results["http-redirect"]["value"] == f"301 → https://{DOMAIN}/"
    secrets = vault.read_vault(
        inv.path / "group_vars/all/vault.yml", vault.load_secret(inv.password)
    )
    assert not [k for k, v in secrets.items() if v and str(v) in output]


def test_breakage_shows_up_with_status_and_hint(
    setup: tuple[Inventory, CA], lab_host: LabHost
) -> None:
    inv, ca = setup
    lab_host.put("/etc/nginx/sites-enabled/check", nginx_site(redirect=False))
    lab_host.run("nginx -t -q && systemctl reload nginx && systemctl stop mastodon-sidekiq")
    lab_host.run(
        "read -r pw; export REDISCLI_AUTH=$pw; seq 1500 | sed 's/^/RPUSH queue:default j/' "
        "| redis-cli -n 1 >/dev/null",
        stdin=str(
            vault.read_vault(
                inv.path / "group_vars/all/vault.yml", vault.load_secret(inv.password)
            )["vault_redis_password"]
        )
        + "\n",
    )
    try:
        code, data, output = run_check(inv, ca, lab_host.host, "--tls-warn-days", "365")
    finally:
        lab_host.put("/etc/nginx/sites-enabled/check", nginx_site(redirect=True))
        lab_host.run("systemctl reload nginx && systemctl start mastodon-sidekiq")
    results = by_check(data)
    assert code == 2, output
    assert results["units@ck-web"]["status"] == "CRIT"
    assert results["units@ck-web"]["value"] == "mastodon-sidekiq inactive (dead)"
    assert "journalctl -u mastodon-sidekiq.service" in results["units@ck-web"]["hint"]
    assert results["http-redirect"]["status"] == "WARN"
    assert results["http-redirect"]["value"] == "answers 200 over plain HTTP instead of redirecting"
    assert results["tls-expiry"]["status"] == "WARN"
    assert results["sidekiq@ck-web"]["status"] == "WARN"
    assert results["sidekiq@ck-web"]["value"] == "retry 2, dead 1, queue:default 1503"
    for name in ("health", "api", "nodeinfo", "webfinger", "actor", "disk@ck-web", "backup@ck-web"):
        assert results[name]["status"] == "OK", results[name]
