"""Host-side checks of `fedictl check`: the real playbook, run by the real ansible-playbook.

The example inventory's only host is this machine here (`ansible_connection: local`), so
playbooks/check-host.yml really runs df, reads the backup status file and calls systemctl and
redis-cli. This machine has neither systemd as PID 1 nor Redis, so those two programs are
stand-ins placed first on PATH (as test_deploy.py does for ansible-playbook): a `systemctl` that
answers `show` from a table, and a `redis-cli` that checks the AUTH line on its stdin against
the password it was given and records how it was called. The real programs are exercised on a
lab host in test_check_lab.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_check_fixtures import Inventory, by_check, report, write_inventory

from fedictl import check, check_host, vault
from fedictl.check_host import HostPlan

HOST = "lab1"
VENV_BIN = str(Path(sys.executable).parent)

FAKE_SYSTEMCTL = """#!{python}
import json, sys
table = json.load(open({config!r}))
args = sys.argv[1:]
if args[:1] != ["show"]:
    sys.exit("fake systemctl: only `show` is supported")
units = args[args.index("--") + 1:]
blocks = []
missing = {{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}}
for unit in units:
    state = table.get(unit, missing)
    blocks.append("\\n".join([f"Id={{unit}}"] + [f"{{k}}={{v}}" for k, v in state.items()]))
print("\\n\\n".join(blocks))
"""

FAKE_REDIS_CLI = """#!{python}
import json, os, sys
config = json.load(open({config!r}))
log = {log!r}
lines = sys.stdin.read().splitlines()
with open(log, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "env_has_password":
        any(config["password"] in v for v in os.environ.values()), "first": lines[:1]}}) + "\\n")
if config.get("down"):
    print("Could not connect to Redis at 127.0.0.1:6379: Connection refused", file=sys.stderr)
    sys.exit(1)
authed = False
for line in lines:
    if line.startswith("AUTH "):
        authed = line[5:] == config["password"]
        print("OK" if authed else "WRONGPASS invalid username-password pair or user is disabled.")
    elif not authed:
        print("NOAUTH Authentication required.")
    else:
        print(config["counts"][line])
"""

ACTIVE = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running"}


class Host:
    """This machine as the inventory's host, with stand-in systemctl and redis-cli."""

    def __init__(self, inv: Inventory, base: Path) -> None:
        self.base = base
        self.bin = base / "bin"
        self.bin.mkdir()
        self.status_file = base / "backup-status.json"
        self.units_file = base / "units.json"
        self.redis_file = base / "redis.json"
        self.redis_log = base / "redis-calls.log"
        secret = vault.load_secret(inv.password)
        self.vault = vault.read_vault(inv.path / "group_vars/all/vault.yml", secret)
        self.password = str(self.vault["vault_redis_password"])
        for name, text in (
            (
                "systemctl",
                FAKE_SYSTEMCTL.format(python=sys.executable, config=str(self.units_file)),
            ),
            (
                "redis-cli",
                FAKE_REDIS_CLI.format(
                    python=sys.executable, config=str(self.redis_file), log=str(self.redis_log)
                ),
            ),
        ):
            path = self.bin / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        (inv.path / "host_vars").mkdir(exist_ok=True)
        (inv.path / "host_vars" / f"{HOST}.yml").write_text(
            f"ansible_connection: local\nansible_become: false\n"
            f"ansible_python_interpreter: {sys.executable}\n"
            f"fedictl_backup_status_file: {self.status_file}\n"
        )
        env = dict(inv.env)
        env["PATH"] = os.pathsep.join([str(self.bin), VENV_BIN, os.environ.get("PATH", "")])
        self.inv = Inventory(inv.path, inv.password, env)
        self.units({})
        self.redis({"queue:default": 0, "retry": 0, "dead": 0})

    def units(self, table: dict[str, dict[str, str]]) -> None:
        self.units_file.write_text(json.dumps(table))

    def redis(self, counts: dict[str, int], password: str = "", down: bool = False) -> None:
        config = {
            "password": password or self.password,
            "counts": {
                f"ZCARD {k}" if k != "queue:default" else f"LLEN {k}": v for k, v in counts.items()
            },
            "down": down,
        }
        self.redis_file.write_text(json.dumps(config))

    def backup(self, apps: dict[str, Any] | None) -> None:
        if apps is None:
            self.status_file.unlink(missing_ok=True)
        else:
            self.status_file.write_text(json.dumps({"hosts": [HOST], "apps": apps}))

    def check(self, *args: str) -> tuple[int, dict[str, Any], str]:
        result = self.inv.check("--only", "host", "--json", *args)
        assert "Traceback" not in result.output, result.output
        return result.exit_code, report(result), result.output


@pytest.fixture(name="host", scope="module")
def host_fixture(tmp_path_factory: pytest.TempPathFactory) -> Host:
    base = tmp_path_factory.mktemp("host")
    return Host(write_inventory(base / "inv"), base)


def ago(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


ALL_UNITS = {
    u: ACTIVE
    for u in (
        "mastodon-web.service",
        "mastodon-sidekiq.service",
        "mastodon-streaming@4000.service",
        "peertube.service",
        "php8.4-fpm.service",
        "pixelfed-horizon.service",
        "nginx.service",
    )
}


def test_a_healthy_host_is_ok(host: Host) -> None:
    host.units(ALL_UNITS)
    host.backup(
        {
            app: {"last_success": ago(3), "last_error": None}
            for app in ("mastodon", "peertube", "pixelfed")
        }
    )
    host.redis({"queue:default": 4, "retry": 2, "dead": 17})
    host.redis_log.unlink(missing_ok=True)
    code, data, output = host.check("--disk-warn", "0.0001", "--disk-crit", "0")
    results = by_check(data, "social.example.test")
    assert code == 0, output
    assert results["units@lab1"]["value"] == (
        "active: mastodon-web, mastodon-sidekiq, mastodon-streaming@4000, nginx"
    )
    assert by_check(data, "video.example.test")["units@lab1"]["value"] == "active: peertube, nginx"
    assert (
        results["disk@lab1"]["value"].startswith("/ ") and "% free" in results["disk@lab1"]["value"]
    )
    assert results["backup@lab1"]["value"].startswith("last success 3.0 h ago")
    assert results["sidekiq@lab1"]["value"] == "retry 2, dead 17, queue:default 4"
    assert {r["check"] for r in data["results"] if r["app"] != "mastodon"} == {
        "units",
        "disk",
        "backup",
    }
    # The Redis password reached redis-cli on its stdin only, and appears in no output.
    (call,) = [json.loads(line) for line in host.redis_log.read_text().splitlines()]
    assert call["argv"] == ["-h", "127.0.0.1", "-p", "6379", "-n", "1"]
    assert call["first"] == [f"AUTH {host.password}"] and not call["env_has_password"]
    leaked = [k for k, v in host.vault.items() if v and str(v) in output]
    assert not leaked, leaked


def test_failures_on_the_host_get_their_status_and_hint(host: Host) -> None:
    units = dict(ALL_UNITS)
    units["mastodon-sidekiq.service"] = {
        "LoadState": "loaded",
        "ActiveState": "failed",
        "SubState": "failed",
    }
    units["mastodon-web.service"] = {
        "LoadState": "loaded",
        "ActiveState": "activating",
        "SubState": "start",
    }
    del units["pixelfed-horizon.service"]
    host.units(units)
    host.backup(
        {
            "mastodon": {"last_success": ago(30), "last_error": None},
            "peertube": {"last_success": ago(60), "last_error": None},
            "pixelfed": {"last_success": ago(2), "last_error": "restic: repository is locked"},
        }
    )
    host.redis({"queue:default": 20000, "retry": 3, "dead": 1})
    code, data, _ = host.check("--disk-warn", "100", "--disk-crit", "0.0001")
    assert code == 2
    mastodon = by_check(data, "social.example.test")
    units_result = mastodon["units@lab1"]
    assert units_result["status"] == "CRIT"
    assert (
        units_result["value"] == "mastodon-web activating (start); mastodon-sidekiq failed (failed)"
    )
    assert units_result["hint"] == (
        "on lab1: `journalctl -u mastodon-web.service -n 50`, then "
        "`systemctl restart mastodon-web.service`"
    )
    pixelfed = by_check(data, "photos.example.test")
    assert pixelfed["units@lab1"]["value"] == "pixelfed-horizon not installed"
    assert "fedictl deploy --app pixelfed" in pixelfed["units@lab1"]["hint"]
    assert mastodon["disk@lab1"]["status"] == "WARN"
    assert "free space on lab1:/" in mastodon["disk@lab1"]["hint"]
    assert mastodon["backup@lab1"]["status"] == "WARN"
    assert by_check(data, "video.example.test")["backup@lab1"]["status"] == "CRIT"
    assert pixelfed["backup@lab1"]["status"] == "WARN"
    assert pixelfed["backup@lab1"]["value"].endswith(
        "last run failed: restic: repository is locked"
    )
    assert mastodon["sidekiq@lab1"]["status"] == "CRIT"
    assert "Sidekiq is falling behind" in mastodon["sidekiq@lab1"]["hint"]


def test_no_backup_yet_and_redis_problems(host: Host) -> None:
    host.units(ALL_UNITS)
    host.backup(None)
    host.redis({"queue:default": 0, "retry": 0, "dead": 0}, password="not-the-vault-one")
    code, data, output = host.check("--app", "mastodon", "--only", "backup,sidekiq")
    results = by_check(data)
    assert results["backup@lab1"]["status"] == "WARN"
    assert results["backup@lab1"]["value"].startswith("no backup has run yet (")
    assert results["sidekiq@lab1"]["status"] == "UNKNOWN"
    assert "WRONGPASS" in results["sidekiq@lab1"]["value"]
    assert "vault_redis_password" in results["sidekiq@lab1"]["hint"]
    assert code == 3  # UNKNOWN outranks WARN
    assert host.password not in output

    host.redis({}, down=True)
    code, data, _ = host.check("--app", "mastodon", "--only", "sidekiq")
    result = by_check(data)["sidekiq@lab1"]
    assert code == 2 and result["status"] == "CRIT"
    assert (
        result["value"] == "Redis: Could not connect to Redis at 127.0.0.1:6379: Connection refused"
    )


def test_an_unreachable_host_is_crit_and_web_checks_still_run(tmp_path: Path) -> None:
    import socket

    inv = write_inventory(tmp_path / "inv")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    (inv.path / "host_vars").mkdir()
    (inv.path / "host_vars" / f"{HOST}.yml").write_text(
        f"ansible_host: 127.0.0.1\nansible_port: {port}\n"
        "ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n"
    )
    env = dict(inv.env)
    env["PATH"] = os.pathsep.join([VENV_BIN, os.environ.get("PATH", "")])
    inv = Inventory(inv.path, inv.password, env)
    result = inv.check(
        "--app",
        "peertube",
        "--only",
        "units,disk,dns",
        "--json",
        "--resolve",
        "video.example.test:127.0.0.1",
    )
    data = report(result)
    results = by_check(data)
    assert result.exit_code == 2
    assert results["dns"]["status"] == "OK"
    for name in ("units@lab1", "disk@lab1"):
        assert results[name]["status"] == "CRIT"
        assert results[name]["value"].startswith("unreachable over SSH: ")
        assert "refused" in results[name]["value"].lower()
        assert "--skip host" in results[name]["hint"]


def test_the_plan_follows_the_groups(tmp_path: Path) -> None:
    """Units on the app's hosts and nginx on web hosts; disk and backups on the app's and the
    database hosts (PostgreSQL's data; the backup role dumps there); Sidekiq on the first cache
    host."""
    import yaml

    answers = yaml.safe_load(
        (Path(__file__).parent.parent / "examples" / "answers.yml").read_text()
    )
    answers["servers"] = [
        {"name": name, "address": f"10.213.0.{n}"}
        for n, name in enumerate(["db1", "web1", "app1"], 20)
    ]
    answers["placement"] = {
        "database": "db1",
        "cache": "db1",
        "web": "web1",
        "app": "app1",
        "workers": "app1",
    }
    inv_files = write_inventory(tmp_path / "inv", answers)
    from fedictl.validate import load_and_check

    inv, problems = load_and_check(inv_files.path, inv_files.password)
    assert not problems
    instances = check.instances(inv)
    plans = check_host.plan(inv, instances, check.Options())
    assert plans == {
        "app1": HostPlan(
            units=[
                "mastodon-web.service",
                "mastodon-sidekiq.service",
                "mastodon-streaming@4000.service",
                "peertube.service",
                "php8.4-fpm.service",
                "pixelfed-horizon.service",
            ],
            paths=["/", "/home/mastodon", "/var/www/peertube", "/var/www/pixelfed"],
            backup=True,
        ),
        "web1": HostPlan(units=["nginx.service"]),
        "db1": HostPlan(paths=["/", "/var/lib/postgresql"], backup=True, sidekiq_db=1),
    }
    only_disk = check.Options(checks=frozenset({"disk"}))
    assert check_host.plan(inv, [instances[1]], only_disk) == {
        "app1": HostPlan(paths=["/", "/var/www/peertube"]),
        "db1": HostPlan(paths=["/", "/var/lib/postgresql"]),
    }


@pytest.mark.parametrize(
    ("entry", "status", "shown"),
    [
        (
            {"last_success": "2026-11-22T09:00:00Z", "last_error": None},
            "OK",
            "last success 3.0 h ago",
        ),
        (
            {"last_success": "2026-11-21T09:00:00+00:00", "last_error": None},
            "WARN",
            "last success 27.0 h ago",
        ),
        (
            {"last_success": "2026-11-20T09:00:00Z", "last_error": None},
            "CRIT",
            "last success 51.0 h ago",
        ),
        (
            {"last_success": None, "last_error": "no space left"},
            "CRIT",
            "no successful backup of mastodon yet",
        ),
        (
            {"last_success": None, "last_error": None},
            "WARN",
            "no successful backup of mastodon yet",
        ),
        ({"last_success": "yesterday"}, "WARN", "no successful backup of mastodon yet"),
    ],
)
def test_backup_age_thresholds(entry: dict[str, Any], status: str, shown: str) -> None:
    import base64

    instance = check.Instance(
        "mastodon", "social.example.test", "social.example.test", "v4.7.6", (HOST,), "admin"
    )
    content = base64.b64encode(json.dumps({"hosts": [HOST], "apps": {"mastodon": entry}}).encode())
    facts = {
        "path": "/var/lib/fedictl/backup/status.json",
        "exists": True,
        "content": content.decode(),
    }
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    result = check_host.judge_backup(instance, HOST, facts, check.Options(), now)
    assert result.status.name == status
    assert result.value.startswith(shown)
    assert (result.hint == "") == (status == "OK")


def test_a_malformed_backup_status_file_is_unknown() -> None:
    import base64

    instance = check.Instance(
        "peertube", "video.example.test", "video.example.test", "v8.3.2", (HOST,), "root"
    )
    facts = {
        "path": "/x/status.json",
        "exists": True,
        "content": base64.b64encode(b"{not json").decode(),
    }
    result = check_host.judge_backup(instance, HOST, facts, check.Options())
    assert result.status is check.Status.UNKNOWN
    assert result.value == "/x/status.json cannot be read (not JSON)"
