"""PeerTube on a lab host, end to end: install, upload, restore, upgrade, failed upgrade.

converge.yml ran the whole site.yml with the stand-in release v8.2.4 (tests/standin/, test-only),
its zip checked against its sha256 and its detached signature, on Node.js from the lab's NodeSource
stand-in and pnpm from the lab's npm registry stand-in. The tests run in file order: after the
checks of v1, a video is uploaded (real ffmpeg, HLS served by nginx), a backup is restored onto the
bare pt-new, and the host is upgraded to v8.3.2 (with the 8.3 manual migration script; must pass)
and to the broken v8.3.3 (must roll back) through playbooks/upgrade.yml, checking what a visitor
and the admin would see.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
import testinfra
import yaml

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))
from lab_checks import check_mode_changes, gates_open_changes

testinfra_hosts = ["pt-web"]

DOMAIN = "video.example.test"
HOME = "/var/www/peertube"
CONFIG = f"{HOME}/config/production.yaml"
STORAGE = f"{HOME}/storage"
MARKER = "/var/lib/fedictl/peertube/version"
BACKUPS = "/var/backups/fedictl/peertube"
DB = "peertube_lab"
PORT = 9107
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
STANDIN = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "standin"
VIDEO = "/root/fedictl-test-video.mp4"
SCRIPT_TASK = "Run the manual migration script of each line crossed"


def _lab_host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@cache
def _vars() -> dict[str, object]:
    found: dict[str, object] = _lab_host("pt-web").ansible.get_variables()
    return found


@cache
def _address() -> str:
    return str(_vars()["ansible_host"])


def _pebble_root() -> str:
    """pebble's root (it signs the site's certificate), kept here by playbooks/lab-acme.yml."""
    return str(Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "acme" / "root.pem")


def _request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    address: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """A request to https://video.example.test/PATH at a lab address, verified against pebble."""
    ctx = ssl.create_default_context(cafile=_pebble_root())
    conn = http.client.HTTPSConnection(address or _address(), 443, context=ctx, timeout=timeout)
    conn.sock = ctx.wrap_socket(
        socket.create_connection((address or _address(), 443), timeout=timeout),
        server_hostname=DOMAIN,
    )
    conn.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _get(path: str, address: str | None = None) -> tuple[int, dict[str, str], bytes]:
    return _request("GET", path, address=address)


def _server_config(address: str | None = None) -> dict[str, Any]:
    status, _, body = _get(f"/api/v1/config?t={os.urandom(4).hex()}", address)
    assert status == 200, body[:300]
    found: dict[str, Any] = json.loads(body)
    return found


def _wait_until_served(address: str | None = None) -> None:
    for _ in range(120):
        try:
            if _get(f"/api/v1/ping?t={os.urandom(4).hex()}", address)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("PeerTube did not answer /api/v1/ping through nginx again")


def _psql(host: testinfra.host.Host, sql: str) -> str:
    cmd = host.run("runuser -u postgres -- psql --no-psqlrc -tA -d %s -c %s", DB, sql)
    assert cmd.rc == 0, cmd.stderr
    return str(cmd.stdout.strip())


def _rows_fingerprint(host: testinfra.host.Host) -> str:
    """The rows a visitor and the admin see: videos, their HLS files, users and accounts."""
    return _psql(
        host,
        "SELECT (SELECT count(*) || ':' || md5(coalesce(string_agg(v.id || '|' || v.uuid || '|'"
        " || v.name || '|' || v.state || '|' || coalesce(v.\"publishedAt\"::text, ''), ','"
        " ORDER BY v.id), '')) FROM video v)"
        " || '/' || (SELECT count(*) || ':' || md5(coalesce(string_agg(f.resolution || '|'"
        " || f.size || '|' || f.filename, ',' ORDER BY f.id), '')) FROM \"videoFile\" f)"
        " || '/' || (SELECT count(*) || ':' || md5(coalesce(string_agg(u.username || '|'"
        " || u.password, ',' ORDER BY u.id), '')) FROM \"user\" u)"
        " || '/' || (SELECT count(*) FROM account)",
    )


def _migration_version(host: testinfra.host.Host) -> int:
    return int(_psql(host, 'SELECT "migrationVersion" FROM application'))


def _secrets() -> list[str]:
    return [
        str(v)
        for k, v in _vars().items()
        if k.startswith("vault_") and isinstance(v, str) and len(v) >= 16
    ]


def _assert_no_secret(text: str, what: str) -> None:
    for secret in _secrets():
        assert secret not in text, f"a vault value appears in {what}"


def _ssh(host: Any, command: str) -> list[str]:
    return ["ssh", "-i", host.identity_file, "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            f"{host.user}@{host.address}", command]  # fmt: skip


@dataclass
class Run:
    rc: int
    report: dict[str, Any]
    text: str  # everything ansible-playbook printed

    def results(self, task: str) -> list[dict[str, Any]]:
        """pt-web's results of every run of the task named so (one per loop item); a role's task
        is named "ROLE : NAME" in the report."""
        found: list[dict[str, Any]] = []
        for play in self.report.get("plays", []):
            for entry in play.get("tasks", []):
                if entry["task"]["name"].split(" : ", 1)[-1] != task:
                    continue
                result = entry["hosts"].get("pt-web")
                if result is not None:
                    found.extend(result.get("results") or [result])
        return found

    def messages(self) -> str:
        """The messages of every failed result (including those a rescue handled)."""
        out: list[str] = []
        for play in self.report.get("plays", []):
            for entry in play.get("tasks", []):
                for result in entry["hosts"].values():
                    for item in result.get("results") or [result]:
                        if item.get("failed"):
                            out.append(str(item.get("msg", "")))
        return "\n".join(out)


def _playbook(
    playbook: Path, extra: dict[str, Any], inventory: str | None = None, structured: bool = True
) -> Run:
    """Run a project playbook against the scenario's inventory as `fedictl` would; no vault value
    may appear in what it printed. structured: read the results from Ansible's json callback (every
    result whole, items included); else the output is the project's own callback's, as the admin
    sees it."""
    env = dict(os.environ)
    if structured:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.json"
        env.pop("ANSIBLE_CALLBACK_RESULT_FORMAT", None)
    proc = subprocess.run(
        ["ansible-playbook", "--inventory", inventory or os.environ["MOLECULE_INVENTORY_FILE"],
         "--extra-vars", json.dumps(extra), str(playbook)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    _assert_no_secret(text, f"the output of {playbook.name}")
    if not structured:
        return Run(proc.returncode, {}, text)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"{playbook.name} printed no JSON (rc={proc.returncode}): {text[-3000:]}"
        ) from exc
    return Run(proc.returncode, report, text)


def _upgrade(version: str, release: str) -> Run:
    """playbooks/upgrade.yml as `fedictl upgrade peertube --to VERSION --release-archive ZIP
    --release-checksum sha256:...` runs it, with the stand-in zip of RELEASE (its signature beside
    it; the signing key stays the inventory's)."""
    archive = STANDIN / f"peertube-standin-{release}.zip"
    sha256 = (STANDIN / f"peertube-standin-{release}.zip.sha256").read_text().split()[0]
    return _playbook(
        PROJECT / "playbooks" / "upgrade.yml",
        {
            "fedictl_upgrade_app": "peertube",
            "peertube_version": version,
            "peertube_release_archive": str(archive),
            "peertube_release_sha256": sha256,
        },
    )


def _main_pid(host: testinfra.host.Host) -> str:
    return str(host.check_output("systemctl show --property=MainPID --value peertube.service"))


# --- v8.2.4 as installed by converge ----------------------------------------------------------


def test_v1_is_served_over_tls_through_nginx(host: testinfra.host.Host) -> None:
    # `host` (unused) keeps every test of this file parametrized alike, so they run in file order.
    status, headers, body = _get("/api/v1/ping")
    assert (status, body.strip()) == (200, b"pong")
    assert headers["server"].startswith("nginx"), headers
    config = _server_config()
    assert config["serverVersion"] == "8.2.4"
    # fedictl_apps.peertube.instance_name, away from the default (PeerTube); the stand-in adds that
    # it is not PeerTube.
    assert config["instance"]["name"].startswith("Molecule PeerTube"), config["instance"]
    assert config["transcoding"]["hls"]["enabled"] is True


def test_http_redirects_to_https(host: testinfra.host.Host) -> None:
    out = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{DOMAIN}/about"
    )
    assert out.stdout == f"301 https://{DOMAIN}/about"


def test_release_layout(host: testinfra.host.Host) -> None:
    for name in ("config", "storage", "versions"):
        directory = host.file(f"{HOME}/{name}")
        assert directory.is_directory and directory.user == "peertube", name
    assert host.file(f"{HOME}/config").mode == 0o750
    latest = host.file(f"{HOME}/peertube-latest")
    assert latest.is_symlink and latest.linked_to == f"{HOME}/versions/peertube-v8.2.4"
    assert host.check_output("readlink %s/peertube-latest", HOME) == "versions/peertube-v8.2.4"
    assert host.file(MARKER).content_string.strip() == "v8.2.4"
    # default.yaml is the running release's own, never edited.
    release = host.file(f"{HOME}/versions/peertube-v8.2.4/config/default.yaml")
    assert host.file(f"{HOME}/config/default.yaml").sha256sum == release.sha256sum
    # The stand-in's marker: this is the test release, from the verified zip.
    assert host.file(f"{HOME}/peertube-latest/STANDIN-NOT-PEERTUBE.txt").exists
    # What the stand-in runs besides Node.js (tests/standin/peertube/debian-packages.txt: ffmpeg,
    # postgresql-client) came with the role's packages; prepare.yml installs none of them.
    listed = (PROJECT / "tests/standin/peertube/debian-packages.txt").read_text().splitlines()
    needs = [name for line in listed if (name := line.split("#")[0].strip())]
    assert needs and all(host.package(name).is_installed for name in needs), needs
    # pnpm at the version the release names, from npm (the lab's registry stand-in), no corepack.
    package = json.loads(host.file(f"{HOME}/peertube-latest/package.json").content_string)
    wanted = re.fullmatch(
        r"pnpm@(10\.[0-9]+\.[0-9]+)\+sha512\.[0-9a-f]{128}", package["packageManager"]
    )
    assert wanted, package["packageManager"]
    assert host.check_output("pnpm --version") == wanted.group(1)
    assert host.check_output('readlink -f "$(command -v pnpm)"').endswith("/pnpm/bin/pnpm.cjs")


def test_production_yaml_is_private_and_has_the_inventory_values(host: testinfra.host.Host) -> None:
    config_file = host.file(CONFIG)
    owner = (config_file.user, config_file.group, config_file.mode)
    assert owner == ("peertube", "peertube", 0o640)
    config = yaml.safe_load(config_file.content_string)
    assert config["webserver"]["hostname"] == DOMAIN
    assert config["listen"]["port"] == PORT
    assert (config["database"]["name"], config["database"]["username"]) == (DB, "ptlab")
    assert config["redis"]["db"] == 6
    assert config["transcoding"]["threads"] == 2
    assert config["instance"]["name"] == "Molecule PeerTube"
    assert config["storage"]["streaming_playlists"].startswith(f"{STORAGE}/")
    # The settings reach the running process: it listens on the port, its heartbeat is in Redis
    # database 6 (the password read on the host, passed on standard input).
    listening = host.check_output("ss -Hltnp 'sport = :%s'", str(PORT))
    assert f"127.0.0.1:{PORT}" in listening, listening
    assert f"pid={_main_pid(host)}," in listening, listening
    heartbeat = host.check_output(
        "sed -n 's/^requirepass \"\\(.*\\)\"$/\\1/p' /etc/redis/redis.conf"
        " | redis-cli --askpass --no-auth-warning -n 6 GET standin:peertube:heartbeat"
    )
    assert json.loads(heartbeat)["version"] == "8.2.4", heartbeat


def test_no_secret_is_readable_by_other_users(host: testinfra.host.Host) -> None:
    """Every file on pt-web holding a vault value is unreadable for an unprivileged user; the
    root password is in none but PeerTube's own log (upstream logs it at the first start)."""
    from fedictl.lab import Lab

    (web,) = [h for h in Lab().hosts() if h.name == "pt-web"]
    # Where configuration, caches, backups and leftovers live (the temporary directories too).
    temporary = ["/tmp", "/var/tmp"]  # noqa: S108
    roots = " ".join(
        ["/etc", HOME, "/var/lib/fedictl", "/var/cache/fedictl", BACKUPS, "/root", "/home", "/srv",
         "/opt", "/usr/local", *temporary]
    )  # fmt: skip
    # The secrets travel on standard input, never on a command line.
    proc = subprocess.run(
        _ssh(web, f"grep -rlsIF --exclude-dir=node_modules -f /dev/stdin {roots}; true"),
        input="\n".join(_secrets()) + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    holders = proc.stdout.split()
    print("files holding a vault value:", holders)
    assert CONFIG in holders, "the search found production.yaml"
    readable = [f for f in holders if host.run("runuser -u nobody -- test -r %s", f).rc == 0]
    assert not readable, f"readable by any user: {readable}"
    root_password = str(_vars()["vault_peertube_root_password"])
    proc = subprocess.run(
        _ssh(web, f"grep -rlsIF --exclude-dir=node_modules -f /dev/stdin {roots}; true"),
        input=root_password + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    elsewhere = [f for f in proc.stdout.split() if not f.startswith(f"{STORAGE}/logs/")]
    assert not elsewhere, f"the root password is kept in {elsewhere}"
    assert not host.file("/etc/fedictl/peertube/initial-root-password.env").exists
    assert not host.file(
        "/etc/systemd/system/peertube.service.d/fedictl-initial-root-password.conf"
    ).exists
    environ = host.run("tr '\\0' '\\n' < /proc/%s/environ", _main_pid(host))
    assert environ.rc == 0 and "PT_INITIAL_ROOT_PASSWORD" not in environ.stdout


def test_unit_runs_as_peertube(host: testinfra.host.Host) -> None:
    service = host.service("peertube.service")
    assert service.is_running and service.is_enabled
    pid = _main_pid(host)
    assert host.check_output("ps -o user= -p %s", pid) == "peertube"
    assert host.check_output("ps -o args= -p %s", pid) == "/usr/bin/node dist/server"
    assert host.check_output("readlink /proc/%s/cwd", pid) == f"{HOME}/versions/peertube-v8.2.4"


def test_unit_passes_systemd_analyze_verify(host: testinfra.host.Host) -> None:
    cmd = host.run("systemd-analyze verify peertube.service")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stderr.strip() == "", cmd.stderr


def test_unit_exposure_is_at_most_3(host: testinfra.host.Host) -> None:
    out = host.check_output("systemd-analyze security --no-pager peertube.service | tail -n 1")
    match = re.search(r"exposure level for \S+: ([0-9.]+)", out)
    assert match, out
    print(f"systemd-analyze security peertube.service: {match.group(1)}")
    assert float(match.group(1)) <= 3.0, out


# --- The admin: the root password from the vault, through `fedictl secrets show` ----------------


@pytest.fixture(scope="module")
def admin_inventory(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, dict[str, str]]:
    """An inventory for pt-web by `fedictl init`, holding this scenario's vault values."""
    from fedictl import vault
    from fedictl.lab import Lab

    tmp = tmp_path_factory.mktemp("admin")
    root = tmp / "project"
    root.mkdir()
    for item in ("playbooks", "roles", "plugins", "ansible.cfg"):
        (root / item).symlink_to(PROJECT / item)
    env = dict(os.environ, FEDICTL_ROOT=str(root), XDG_CONFIG_HOME=str(tmp / "config"))
    for key in list(env):
        if key.startswith(("ANSIBLE_", "MOLECULE_")):
            del env[key]
    (web,) = [h for h in Lab().hosts() if h.name == "pt-web"]
    answers = {
        "org_name": "Check PeerTube",
        "admin_email": f"admin@{DOMAIN}",
        "admin_ssh_keys": list(cast(list[str], _vars()["fedictl_admin_ssh_keys"])),
        "apps": {
            "peertube": {
                "domain": DOMAIN, "version": "v8.2.4", "db_name": DB, "db_user": "ptlab",
                "redis_db": 6, "port": PORT,
            }
        },
        "servers": [
            {
                "name": "pt-web",
                "address": web.address,
                "user": "root",
                "port": 22,
                "identity_file": web.identity_file,
                "host_key_checking": False,
            }
        ],
        "smtp": {
            "host": "smtp.example.test",
            "port": 587,
            "tls": "starttls",
            "user": "",
            "from_address": f"notifications@{DOMAIN}",
        },
        "acme": {"email": f"admin@{DOMAIN}"},
        "backup": {"repository": "/var/backups/fedictl/restic"},
    }  # fmt: skip
    (tmp / "answers.yml").write_text(json.dumps(answers))
    init = subprocess.run(
        [str(Path(sys.executable).parent / "fedictl"), "init", "ptcheck", "--answers",
         str(tmp / "answers.yml")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stdout + init.stderr
    inv = root / "inventories" / "ptcheck"
    password = tmp / "config" / "fedictl" / "vault" / "ptcheck.pass"
    secret = vault.load_secret(password)
    data = vault.read_vault(inv / "group_vars/all/vault.yml", secret)
    # The vault of the inventory this instance was deployed from: this scenario's values.
    data.update({k: v for k, v in _vars().items() if k.startswith("vault_") and k in data})
    vault.write_vault(inv / "group_vars/all/vault.yml", data, secret)
    return inv, password, env


def _fedictl(
    inventory: tuple[Path, Path, dict[str, str]], *args: str
) -> subprocess.CompletedProcess[str]:
    inv, password, env = inventory
    return subprocess.run(
        [str(Path(sys.executable).parent / "fedictl"), *args, "-i", str(inv),
         "--vault-password-file", str(password)],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def _token(username: str, password: str, address: str | None = None) -> tuple[int, dict[str, Any]]:
    """OAuth's password grant as PeerTube's clients do it, through nginx over TLS."""
    status, _, body = _get("/api/v1/oauth-clients/local", address)
    assert status == 200, body[:300]
    client = json.loads(body)
    form = urllib.parse.urlencode(
        {"client_id": client["client_id"], "client_secret": client["client_secret"],
         "grant_type": "password", "response_type": "code", "username": username,
         "password": password}
    ).encode()  # fmt: skip
    status, _, body = _request(
        "POST",
        "/api/v1/users/token",
        form,
        {"Content-Type": "application/x-www-form-urlencoded"},
        address,
    )
    return status, json.loads(body)


def _root_password(admin_inventory: tuple[Path, Path, dict[str, str]]) -> str:
    shown = _fedictl(admin_inventory, "secrets", "show", "peertube_root_password")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.strip()


def test_root_logs_in_with_the_password_fedictl_secrets_show_gives(
    host: testinfra.host.Host, admin_inventory: tuple[Path, Path, dict[str, str]]
) -> None:
    password = _root_password(admin_inventory)
    assert password == _vars()["vault_peertube_root_password"]
    status, token = _token("root", password)
    assert status == 200 and token["token_type"].lower() == "bearer", token
    status, _, body = _request(
        "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    me = json.loads(body)
    assert status == 200 and me["username"] == "root" and me["role"]["id"] == 0, me
    assert me["email"] == f"admin@{DOMAIN}", me
    status, answer = _token("root", password + "x")
    assert status == 400 and answer.get("code") == "invalid_grant", answer


# --- `fedictl check` against this instance ----------------------------------------------------


def _fedictl_check(inventory: tuple[Path, Path, dict[str, str]]) -> tuple[int, dict[str, Any], str]:
    proc = _fedictl(
        inventory,
        "check",
        "--json",
        "--ca-file",
        _pebble_root(),
        "--resolve",
        f"{DOMAIN}:{_address()}",
    )
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    _assert_no_secret(output, "fedictl check's output")
    assert proc.stdout.startswith("{"), f"exit {proc.returncode}: {output}"
    return proc.returncode, json.loads(proc.stdout), output


def _by_check(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        (r["check"] if r["target"] == r["instance"] else f"{r['check']}@{r['target']}"): r
        for r in report["results"]
    }


def test_fedictl_check_finds_the_instance_healthy_then_a_stopped_unit(
    host: testinfra.host.Host, admin_inventory: tuple[Path, Path, dict[str, str]]
) -> None:
    """Every PeerTube check against the real nginx, pebble certificate, unit and backup status of
    this converged instance: all OK; then peertube.service stopped is CRIT with a hint."""
    backup = host.run("systemctl start fedictl-backup.service")
    assert backup.rc == 0, backup.stderr
    code, report, output = _fedictl_check(admin_inventory)
    results = _by_check(report)
    print(output)
    assert {
        "dns", "http-redirect", "https", "tls", "tls-expiry", "health", "api", "release",
        "nodeinfo", "webfinger", "actor", "units", "disk", "backup",
    } <= {name.split("@")[0] for name in results}  # fmt: skip
    not_ok = {
        k: (r["status"], r["value"], r["hint"]) for k, r in results.items() if r["status"] != "OK"
    }
    assert code == 0 and not not_ok, not_ok
    assert "version 8.2.4" in results["api"]["value"], results["api"]
    assert "reports peertube" in results["nodeinfo"]["value"], results["nodeinfo"]

    assert host.run("systemctl stop peertube.service").rc == 0
    try:
        code, report, output = _fedictl_check(admin_inventory)
    finally:
        assert host.run("systemctl start peertube.service").rc == 0
    results = _by_check(report)
    assert code == 2, output
    units = next(r for k, r in results.items() if k.split("@")[0] == "units")
    assert units["status"] == "CRIT" and "peertube" in units["value"] and units["hint"], units
    assert results["health"]["status"] == "CRIT" and results["health"]["hint"], results["health"]
    _wait_until_served()


def test_check_mode_on_the_converged_host_changes_nothing(host: testinfra.host.Host) -> None:
    stats = check_mode_changes()
    assert stats["pt-web"]["changed"] == 0, stats
    assert stats["pt-web"]["failures"] == 0, stats


SAMPLES = "/root/fedictl-process-table.txt"


@pytest.fixture(scope="module")
def process_table(host: testinfra.host.Host) -> str:
    """Record every process's command line on pt-web, every 50 ms, from first use until the last
    test of this file reads it: a converge and two upgrades run meanwhile."""
    host.run("rm -f %s", SAMPLES)
    sampler = "/root/fedictl-process-sampler.sh"
    host.check_output(
        "printf '%%s\\n' %s > %s",
        f"while :; do ps -eo args= >> {SAMPLES}; echo --- >> {SAMPLES}; sleep 0.05; done",
        sampler,
    )
    pid = host.check_output(f"nohup sh {sampler} > /dev/null 2>&1 & echo $!")
    return pid.strip()


def test_idempotent_with_the_gates_open(process_table: str) -> None:
    stats = gates_open_changes()
    assert stats["pt-web"]["changed"] == 0, stats
    assert stats["pt-web"]["failures"] == 0, stats


# --- A video: uploaded by root, transcoded to HLS by real ffmpeg, served by nginx ----------------


def _multipart(fields: dict[str, str], name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = f"fedictl-{os.urandom(8).hex()}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _hls(uuid: str, address: str | None = None) -> dict[str, Any]:
    """The video's HLS files as a player finds them: master playlist → variant → first segment."""
    status, _, body = _get(f"/api/v1/videos/{uuid}", address)
    assert status == 200, body[:300]
    video = json.loads(body)
    (playlist,) = video["streamingPlaylists"]
    master_url = urllib.parse.urlsplit(playlist["playlistUrl"])
    assert master_url.netloc == DOMAIN and master_url.scheme == "https", playlist
    base = master_url.path.rsplit("/", 1)[0]
    status, _, master = _get(master_url.path, address)
    assert status == 200 and master.startswith(b"#EXTM3U"), master[:200]
    variant = next(line for line in master.decode().splitlines() if line.endswith(".m3u8"))
    status, _, variant_body = _get(f"{base}/{variant}", address)
    assert status == 200 and variant_body.startswith(b"#EXTM3U"), variant_body[:200]
    segment = next(line for line in variant_body.decode().splitlines() if line.endswith(".ts"))
    status, headers, data = _get(f"{base}/{segment}", address)
    assert status == 200, (status, data[:200])
    return {
        "video": video,
        "segment_path": f"{base}/{segment}",
        "segment": segment,
        "sha256": hashlib.sha256(data).hexdigest(),
        "headers": headers,
        "variant": variant,
    }


@pytest.fixture(scope="module")
def uploaded(
    host: testinfra.host.Host, admin_inventory: tuple[Path, Path, dict[str, str]]
) -> dict[str, str]:
    """A 2-second video made by ffmpeg on pt-web, uploaded by root through nginx; its HLS segment's
    sha256 on disk and the rows' fingerprint."""
    made = host.run(
        "ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=duration=2:size=320x240:rate=25"
        " -pix_fmt yuv420p -c:v libx264 %s",
        VIDEO,
    )
    assert made.rc == 0, made.stderr
    data = cast(bytes, host.file(VIDEO).content)
    status, token = _token("root", _root_password(admin_inventory))
    assert status == 200, token
    body, content_type = _multipart(
        {"name": "Molecule test pattern", "privacy": "1"}, "videofile", "test-pattern.mp4", data
    )
    status, _, answer = _request(
        "POST",
        "/api/v1/videos/upload",
        body,
        {"Authorization": f"Bearer {token['access_token']}", "Content-Type": content_type},
    )
    assert status == 200, answer[:500]
    uuid = json.loads(answer)["video"]["uuid"]
    playlists = yaml.safe_load(host.file(CONFIG).content_string)["storage"]["streaming_playlists"]
    hls = _hls(uuid)
    on_disk = f"{playlists.rstrip('/')}/hls/{uuid}/{hls['segment']}"
    return {
        "uuid": uuid,
        "segment_path": hls["segment_path"],
        "segment_file": on_disk,
        "segment_sha256": host.check_output("sha256sum %s | cut -d' ' -f1", on_disk),
        "hls_dir": f"{playlists.rstrip('/')}/hls/{uuid}",
        "rows": _rows_fingerprint(host),
    }


def test_an_uploaded_video_is_served_as_hls_by_nginx(
    host: testinfra.host.Host, uploaded: dict[str, str]
) -> None:
    hls = _hls(uploaded["uuid"])
    video = hls["video"]
    assert video["name"] == "Molecule test pattern" and video["state"]["label"] == "Published"
    assert video["streamingPlaylists"][0]["files"][0]["resolution"]["id"] == 240
    assert hls["sha256"] == uploaded["segment_sha256"], "the segment served is the file on disk"
    # The static bypass: nginx answers from storage itself (no "X-Powered-By: PeerTube", which every
    # answer of the app carries), with upstream's CORS headers, also when PeerTube is down.
    assert hls["headers"].get("access-control-allow-origin") == "*", hls["headers"]
    assert "x-powered-by" not in hls["headers"], hls["headers"]
    assert _get("/api/v1/ping")[1].get("x-powered-by") == "PeerTube", "the app's answers carry it"
    assert host.run("systemctl stop peertube.service").rc == 0
    try:
        status, _, _ = _get("/api/v1/ping")
        assert status == 502, "the API is down"
        status, headers, data = _get(uploaded["segment_path"])
        assert status == 200 and hashlib.sha256(data).hexdigest() == uploaded["segment_sha256"]
        assert headers["server"].startswith("nginx"), headers
        assert headers["access-control-allow-origin"] == "*", headers
    finally:
        assert host.run("systemctl start peertube.service").rc == 0
    _wait_until_served()


# --- Restore onto a new server ------------------------------------------------------------------


def _moved_inventory(tmp: Path) -> Path:
    """Molecule's inventory as the operator edits it after losing pt-web: pt-new takes every group
    pt-web was in; pt-web stays known but in no group."""
    source = Path(os.environ["MOLECULE_INVENTORY_FILE"])
    target = tmp / "inventory"
    shutil.copytree(source.parent, target, symlinks=False)
    data = yaml.safe_load((target / source.name).read_text())
    new_conn = data["all"]["hosts"]["pt-new"]
    for group, body in data.items():
        hosts = body.get("hosts") or {}
        if group != "all" and "pt-web" in hosts:
            del hosts["pt-web"]
            hosts["pt-new"] = new_conn
    ungrouped = data.setdefault("ungrouped", {}).setdefault("hosts", {})
    ungrouped["pt-web"] = data["all"]["hosts"]["pt-web"]
    ungrouped.pop("pt-new", None)
    (target / source.name).write_text(yaml.safe_dump(data))
    return target / source.name


def test_restore_installs_the_app_on_a_new_server_and_brings_the_data_back(
    host: testinfra.host.Host, uploaded: dict[str, str], tmp_path: Path
) -> None:
    """pt-web is lost: the inventory now puts pt-new, a bare Debian 13, in its groups, and the
    domain's DNS points at pt-new. The restore (playbooks/restore.yml, as `fedictl backup restore`
    runs it) installs PeerTube there first (site.yml for pt-new: PostgreSQL, Redis, nginx with a
    certificate from pebble, Node.js, pnpm, the release), then replaces that install's database,
    storage and configuration with the backup's, starts it and waits for its health.

    The repository is a local path on pt-web in this scenario; the test carries it to pt-new as an
    operator would bring the disk or the remote (sftp repositories: molecule/backup)."""
    from fedictl.lab import Lab

    lab = {h.name: h for h in Lab().hosts()}
    web, new, acme = lab["pt-web"], lab["pt-new"], lab["pt-acme"]
    new_host = _lab_host("pt-new")
    assert not new_host.file(CONFIG).exists
    assert new_host.run("systemctl cat peertube.service").rc != 0, "pt-new is not bare"

    backup = host.run("systemctl start fedictl-backup.service")
    assert backup.rc == 0, backup.stderr
    sender = subprocess.Popen(
        _ssh(web, "tar -C /var/backups/fedictl -cf - restic"), stdout=subprocess.PIPE
    )
    receiver = subprocess.run(
        _ssh(new, "install -d -m 0700 /var/backups/fedictl && tar -C /var/backups/fedictl -xf -"),
        stdin=sender.stdout, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sender.wait() == 0 and receiver.returncode == 0, receiver.stderr

    moved_dns = (
        f"cp /etc/hosts /etc/hosts.before-move && sed -i 's/[[:space:]]{DOMAIN}//' /etc/hosts"
        f" && echo '{new.address} {DOMAIN}' >> /etc/hosts"
    )
    for where in (acme, new):
        subprocess.run(_ssh(where, moved_dns), check=True, capture_output=True)
    try:
        run = _playbook(
            PROJECT / "playbooks" / "restore.yml",
            {"fedictl_restore_app": "peertube", "fedictl_report_dir": str(tmp_path)},
            inventory=str(_moved_inventory(tmp_path)),
            # As `fedictl backup restore` shows it. (Its install runs database.yml, whose postgresql
            # role prints each database's password in its validation's loop items in JSON.)
            structured=False,
        )
    finally:
        for where in (acme, new):
            subprocess.run(_ssh(where, "mv /etc/hosts.before-move /etc/hosts"), check=False)
    assert run.rc == 0, run.text[-4000:]

    report = json.loads((tmp_path / "restore.json").read_text())
    assert report["installed"] == ["pt-new"] and report["database_host"] == "pt-new"
    assert report["completed"] and report["database"]["ok"], report
    assert all(f["ok"] for f in report["files"].values()), report["files"]
    # The rows (the video, its files, root and its password hash) are the backup's now.
    assert _rows_fingerprint(new_host) == uploaded["rows"]
    assert new_host.service("peertube.service").is_running
    assert new_host.file(MARKER).content_string.strip() == "v8.2.4"
    # A visitor reaching the moved domain gets pt-new's own certificate from pebble, v8.2.4 and the
    # video's HLS segment, byte for byte, from nginx's static bypass.
    assert _server_config(new.address)["serverVersion"] == "8.2.4"
    hls = _hls(uploaded["uuid"], new.address)
    assert hls["sha256"] == uploaded["segment_sha256"]
    assert new_host.file(uploaded["segment_file"]).user == "peertube"
    # The configuration is the backup's, private; the release's dependencies were installed there,
    # never taken from the backup.
    assert new_host.file(CONFIG).sha256sum == host.file(CONFIG).sha256sum
    assert (new_host.file(CONFIG).user, new_host.file(CONFIG).mode) == ("peertube", 0o640)
    assert new_host.file(f"{HOME}/peertube-latest/node_modules").is_directory


# --- Upgrades ----------------------------------------------------------------------------------


def _untouched(host: testinfra.host.Host) -> dict[str, str]:
    return {
        "marker": host.file(MARKER).content_string.strip(),
        "latest": host.check_output("readlink %s/peertube-latest", HOME),
        "versions": host.check_output("ls %s/versions", HOME),
        "backups": host.run("ls %s 2>/dev/null", BACKUPS).stdout,
        "config": host.file(CONFIG).sha256sum,
        "pid": _main_pid(host),
    }


def test_preflight_refuses_a_downgrade_and_a_tag_that_is_not_a_release(
    host: testinfra.host.Host, uploaded: dict[str, str]
) -> None:
    before = _untouched(host)
    run = _upgrade("v8.2.3", "v8.2.4")
    assert run.rc != 0
    said = run.messages()
    assert "runs PeerTube v8.2.4, newer than peertube_version v8.2.3" in said, said
    for tag in ("v8.3.2-rc.1", "8.3.2", "latest"):
        run = _upgrade(tag, "v8.3.2")
        assert run.rc != 0, tag
        assert "write an upstream release tag" in run.messages(), (tag, run.messages())
    assert _untouched(host) == before, "a refused upgrade changed something"
    assert _rows_fingerprint(host) == uploaded["rows"]


def test_upgrade_to_v2_keeps_the_video_and_rows_and_runs_the_83_script_once(
    host: testinfra.host.Host, uploaded: dict[str, str], process_table: str
) -> None:
    pid = _main_pid(host)
    run = _upgrade("v8.3.2", "v8.3.2")
    assert run.rc == 0, run.messages()[-3000:] or run.text[-3000:]
    assert _server_config()["serverVersion"] == "8.3.2"
    assert host.check_output("readlink %s/peertube-latest", HOME) == "versions/peertube-v8.3.2"
    assert host.file(MARKER).content_string.strip() == "v8.3.2"
    assert _main_pid(host) not in ("0", pid), "PeerTube was restarted on the new release"
    # The video and the rows are intact, served over TLS.
    assert _rows_fingerprint(host) == uploaded["rows"]
    assert _hls(uploaded["uuid"])["sha256"] == uploaded["segment_sha256"]
    # 8.3's automatic migration ran at start (schema 1125), then its manual script, once: it
    # backfilled the new column of the video uploaded on 8.2 from the files on disk.
    assert _migration_version(host) == 1125
    ran = [r for r in run.results(SCRIPT_TASK) if r.get("changed") and not r.get("skipped")]
    assert [r["item"]["key"] for r in ran] == ["8.3"], run.results(SCRIPT_TASK)
    stored = _psql(
        host,
        "SELECT string_agg(p.\"storageBytes\"::text || ' ' || v.uuid, ',')"
        ' FROM "videoStreamingPlaylist" p JOIN video v ON v.id = p."videoId"',
    )
    on_disk = host.check_output(
        "find %s -type f -printf '%%s\\n' | awk '{s += $1} END {print s}'", uploaded["hls_dir"]
    )
    assert stored == f"{on_disk} {uploaded['uuid']}" and on_disk != "", (stored, on_disk)
    # The previous release stays for a rollback; a verified dump and the configuration were kept.
    assert host.file(f"{HOME}/versions/peertube-v8.2.4/.fedictl-release-complete").exists
    dump = host.check_output("ls %s/*-v8.2.4-to-v8.3.2/%s.dump", BACKUPS, DB)
    assert host.run("pg_restore --list %s", dump).rc == 0
    saved = host.file(dump.rsplit("/", 1)[0] + "/production.yaml")
    assert (saved.user, saved.mode) == ("root", 0o600)


def test_failed_upgrade_restores_the_database_and_rolls_back_to_v2(
    host: testinfra.host.Host, uploaded: dict[str, str]
) -> None:
    run = _upgrade("v8.3.3", "v8.3.3-broken")
    assert run.rc != 0, run.text[-3000:]
    said = run.messages()
    assert "Rolled back" in said and "Nothing was lost" in said, said[-3000:]
    assert _server_config()["serverVersion"] == "8.3.2"
    assert host.check_output("readlink %s/peertube-latest", HOME) == "versions/peertube-v8.3.2"
    assert host.file(MARKER).content_string.strip() == "v8.3.2"
    assert host.service("peertube.service").is_running
    # v8.3.3's migration ran before it crashed (schema 1130, a new column); the dump restored both.
    column = _psql(
        host,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'video' AND column_name = 'v833Marker'",
    )
    assert column == "0", "v8.3.3's column survived the rollback"
    assert _migration_version(host) == 1125
    assert _rows_fingerprint(host) == uploaded["rows"]
    assert _hls(uploaded["uuid"])["sha256"] == uploaded["segment_sha256"]
    # The 8.3 script is not run again within the line.
    assert not [r for r in run.results(SCRIPT_TASK) if r.get("changed")]


def test_no_secret_on_any_process_command_line(
    host: testinfra.host.Host, process_table: str
) -> None:
    """While a converge (gates open) and the upgrades ran, no vault value was on a command line
    that any local user can read with ps: secrets go through files and standard input."""
    host.run("kill %s", process_table)
    samples = host.file(SAMPLES).content_string
    host.run("rm -f %s", SAMPLES)
    assert samples.count("---") > 100, "the sampler ran through the converge and the upgrades"
    assert "python3" in samples and "dist/server" in samples, "it saw Ansible and PeerTube run"
    leaked = [line for line in samples.splitlines() for secret in _secrets() if secret in line]
    assert not leaked, (
        "a secret on a command line: "
        + leaked[0].replace(next(s for s in _secrets() if s in leaked[0]), "<SECRET>")[:300]
    )
