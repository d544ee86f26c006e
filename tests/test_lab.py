"""fedictl lab: input checks without a lab, and real hosts where this machine can boot them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fedictl.cli import cli
from fedictl.errors import LabError, UsageError
from fedictl.lab import (
    OWNER_ENV,
    Host,
    Lab,
    _pid_alive,
    apt_mirrors,
    parse_aliases,
    update_etc_hosts,
    validate_name,
)

CAN_BOOT = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng")
)
needs_lab = pytest.mark.skipif(
    not CAN_BOOT, reason="needs root, systemd-nspawn, nft, apt-cacher-ng"
)


# ---- input checks (no host is touched) -------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "web1", "db-2", "abcdefghijkl"])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize("name", ["", "1web", "Web", "abcdefghijklm", "a_b", "a.b", "-a"])
def test_invalid_names_say_the_rule(name: str) -> None:
    with pytest.raises(UsageError, match="1-12 characters"):
        validate_name(name)


def test_cli_rejects_a_long_name_before_touching_anything() -> None:
    result = CliRunner().invoke(cli, ["lab", "up", "averyveryverylongname"])
    assert result.exit_code == 2
    assert "interface" in result.output and "15 characters" in result.output


def test_down_needs_names_or_all() -> None:
    result = CliRunner().invoke(cli, ["lab", "down"])
    assert result.exit_code == 2
    assert "--all" in result.output


def test_a_booting_host_counts_as_alive_before_and_after_its_sh_execs_nspawn() -> None:
    # lab up starts `sh` (which joins the host's cgroups) and it execs systemd-nspawn. The boot wait
    # once asked for each name in a separate read of /proc, and a process that exec'd between the
    # two reads looked dead: "stopped while booting" with an empty console (seen in infra-split).
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert _pid_alive(proc.pid, "systemd-nspawn", "sleep")
        assert _pid_alive(proc.pid, "sleep")
        assert not _pid_alive(proc.pid, "systemd-nspawn", "sh")
    finally:
        proc.kill()
        proc.wait()
    assert not _pid_alive(proc.pid, "systemd-nspawn", "sleep"), "a reaped process is gone"


def test_aliases_parse_and_reject() -> None:
    assert parse_aliases(["web=social.example.test", "web=x.test"], ["web"]) == {
        "web": ["social.example.test", "x.test"]
    }
    with pytest.raises(UsageError, match="HOST=NAME"):
        parse_aliases(["social.example.test"], ["web"])
    with pytest.raises(UsageError, match="one of the hosts"):
        parse_aliases(["db=x.test"], ["web"])
    with pytest.raises(UsageError, match="not a valid host name"):
        parse_aliases(["web=bad_name!"], ["web"])


def _lab_host(name: str, address: str, *aliases: str) -> Host:
    return Host(name, address, "root", 22, "/key", list(aliases))


# A running host's /etc/hosts after a test moved social.example.test from ms-web to ms-new.
MOVED = """# fedictl lab: header
127.0.0.1\tlocalhost
10.213.0.10\tms-acme
10.213.0.11\tms-web
10.213.0.12\tms-new
10.213.0.12 social.example.test
"""


def test_up_elsewhere_adds_its_line_and_keeps_a_moved_name() -> None:
    after = update_etc_hosts(MOVED, [_lab_host("tzt", "10.213.0.13", "t.test")], [])
    assert after == MOVED + "10.213.0.13\ttzt t.test\n"


def test_down_removes_only_the_stopped_hosts_lines() -> None:
    after = update_etc_hosts(MOVED + "10.213.0.13\ttzt t.test\n", [], ["tzt", "ms-new"])
    assert after.splitlines() == [
        "# fedictl lab: header", "127.0.0.1\tlocalhost", "10.213.0.10\tms-acme",
        "10.213.0.11\tms-web", "10.213.0.12 social.example.test",
    ]  # fmt: skip


def test_a_host_up_again_replaces_its_old_line() -> None:
    after = update_etc_hosts(MOVED, [_lab_host("ms-new", "10.213.0.20")], [])
    assert "10.213.0.12\tms-new" not in after.splitlines()
    assert after.endswith("10.213.0.12 social.example.test\n10.213.0.20\tms-new\n")


def test_subnet_must_be_private(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="private"):
        Lab(tmp_path, subnet="8.8.8.0/24")
    with pytest.raises(UsageError, match="FEDICTL_LAB_SUBNET"):
        Lab(tmp_path, subnet="not-a-net")


def test_mirror_comes_from_the_machines_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n"
    )
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb https://vendor.invalid/apt x main\n"
    )
    assert apt_mirrors(tmp_path) == (
        "http://mirror.invalid/debian",
        "http://mirror.invalid/debian-security",
    )


def test_https_only_mirror_is_refused_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDICTL_LAB_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text("deb https://mirror.invalid/debian bookworm main\n")
    with pytest.raises(LabError, match="FEDICTL_LAB_MIRROR"):
        apt_mirrors(tmp_path)


def test_no_mirror_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDICTL_LAB_MIRROR", raising=False)
    with pytest.raises(LabError, match="cannot find a Debian mirror"):
        apt_mirrors(tmp_path)


@pytest.mark.skipif(not (os.geteuid() == 0 and shutil.which("nft")), reason="nft -c needs root")
def test_guard_ruleset_is_valid_nft(tmp_path: Path) -> None:
    ruleset = Lab(tmp_path).guard_ruleset()
    proc = subprocess.run(["nft", "-c", "-f", "-"], input=ruleset, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_list_with_no_lab_is_empty_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDICTL_LAB_DIR", str(tmp_path / "nolab"))
    result = CliRunner().invoke(cli, ["lab", "list", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []


# ---- real hosts ------------------------------------------------------------------------------

NAMES = ["pt-lab-a", "pt-lab-b"]
# scripts/test stops the hosts whose owner is its own: keep its tag when it runs these tests.
OWNER = os.environ.get(OWNER_ENV) or "pytest-test-lab"


def _on(name: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command on a lab host over SSH."""
    argv = Lab().ssh_argv(name, list(command))
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _ssh(name: str, script: str) -> subprocess.CompletedProcess[str]:
    """Run a Python script on a lab host (fed on stdin: ssh joins argv into one shell line)."""
    argv = Lab().ssh_argv(name, ["python3", "-"])
    return subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def two_hosts() -> Iterator[list[dict[str, object]]]:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["lab", "up", *NAMES, "--alias", "pt-lab-b=svc.example.test", "--json"],
        env={OWNER_ENV: OWNER},
    )
    assert result.exit_code == 0, result.output
    try:
        yield json.loads(result.stdout)
    finally:
        down = runner.invoke(cli, ["lab", "down", *NAMES])
        assert down.exit_code == 0, down.output


@needs_lab
def test_up_reports_reachable_hosts(two_hosts: list[dict[str, object]]) -> None:
    assert [h["name"] for h in two_hosts] == NAMES
    for host in two_hosts:
        assert set(host) >= {"name", "address", "user", "port", "identity_file"}
        with socket.create_connection((str(host["address"]), int(host["port"])), timeout=5) as s:
            assert s.recv(4) == b"SSH-"
    listed = json.loads(CliRunner().invoke(cli, ["lab", "list", "--json"]).stdout)
    running = {h["name"] for h in listed if h["running"]}
    assert set(NAMES) <= running
    assert {h["name"]: h["owner"] for h in listed if h["name"] in NAMES} == dict.fromkeys(
        NAMES, OWNER
    ), "each host records who started it, so that scripts/test stops only its own"


@needs_lab
def test_hosts_reach_each_other_by_name_and_alias(two_hosts: list[dict[str, object]]) -> None:
    probe = (
        "import socket\n"
        "for n in ('pt-lab-b', 'svc.example.test'):\n"
        "    s = socket.create_connection((n, 22), timeout=5); print(n, s.recv(4)); s.close()\n"
    )
    result = _ssh("pt-lab-a", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("b'SSH-'") == 2


@needs_lab
def test_guests_run_systemd_as_pid1(two_hosts: list[dict[str, object]]) -> None:
    state = _on("pt-lab-a", "systemctl", "is-system-running", "--wait", timeout=90).stdout.strip()
    assert state in {"running", "degraded"}, state
    assert _on("pt-lab-a", "hostname").stdout.strip() == "pt-lab-a"


@needs_lab
def test_traffic_to_the_outside_is_rejected_at_once(two_hosts: list[dict[str, object]]) -> None:
    # 192.0.2.1 is TEST-NET-1 (documentation only, never routed): the guard must refuse it
    # with an ICMP error, not let it time out (a timeout would mean the packet went somewhere).
    probe = (
        "import socket, errno\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
        "    print('CONNECTED')\n"
        "except TimeoutError:\n"
        "    print('TIMEOUT')\n"
        "except OSError as e:\n"
        "    print('REFUSED', errno.errorcode.get(e.errno))\n"
    )
    result = _ssh("pt-lab-a", probe)
    assert result.stdout.startswith("REFUSED"), result.stdout + result.stderr


@needs_lab
def test_guests_reach_only_the_proxy_on_this_machine(two_hosts: list[dict[str, object]]) -> None:
    gateway = Lab().net.gateway
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # noqa: S104 - proves the guard, not the bind, protects it
        listener.listen()
        port = listener.getsockname()[1]
        probe = (
            "import socket\n"
            f"for port in ({port}, 3142):\n"
            "    try:\n"
            f"        socket.create_connection(('{gateway}', port), timeout=3)\n"
            "        print(port, 'open')\n"
            "    except OSError as e:\n"
            "        print(port, 'closed')\n"
        )
        result = _ssh("pt-lab-a", probe)
    assert f"{port} closed" in result.stdout, result.stdout + result.stderr
    assert "3142 open" in result.stdout, result.stdout


@needs_lab
def test_inventory_drives_ansible(two_hosts: list[dict[str, object]], tmp_path: Path) -> None:
    inventory = CliRunner().invoke(cli, ["lab", "inventory"]).stdout
    hosts = yaml.safe_load(inventory)["all"]["children"]["lab"]["hosts"]
    assert set(NAMES) <= set(hosts)
    path = tmp_path / "inventory.yml"
    path.write_text(inventory)
    proc = subprocess.run(
        ["ansible", "-i", str(path), "--limit", ",".join(NAMES), "-m", "ansible.builtin.ping",
         "all"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == 2


@needs_lab
def test_a_taken_name_is_refused(two_hosts: list[dict[str, object]]) -> None:
    result = CliRunner().invoke(cli, ["lab", "up", "pt-lab-a"])
    assert result.exit_code == 2
    assert "already taken" in result.output and "fedictl lab down pt-lab-a" in result.output


@needs_lab
def test_guests_manage_their_own_network_namespace_only(two_hosts: list[dict[str, object]]) -> None:
    # Firewalls and fail2ban need CAP_NET_ADMIN; the guest has it in its own namespace only.
    proc = _on("pt-lab-a", "ip", "link", "set", "dev", "lo", "mtu", "1500")
    assert proc.returncode == 0, proc.stderr
    assert " mtu 1500 " in _on("pt-lab-a", "ip", "-o", "link", "show", "dev", "lo").stdout
    assert Path("/sys/class/net/lo/mtu").read_text().strip() != "1500"  # this machine's lo


@needs_lab
def test_up_and_down_elsewhere_keep_a_name_moved_on_a_running_host(
    two_hosts: list[dict[str, object]],
) -> None:
    # A test moves svc.example.test away from pt-lab-b (as mastodon's restore test moves its
    # domain); a host booted and stopped meanwhile must not undo that on pt-lab-a.
    moved = (
        "cp /etc/hosts /etc/hosts.before && sed -i 's/ svc.example.test//' /etc/hosts"
        " && echo '192.0.2.7 svc.example.test' >> /etc/hosts"
    )
    assert _on("pt-lab-a", "sh", "-c", shlex.quote(moved)).returncode == 0
    lab = Lab()
    try:
        (third,) = lab.up(["pt-lab-c"])
        hosts = _on("pt-lab-a", "cat", "/etc/hosts").stdout.splitlines()
        assert "192.0.2.7 svc.example.test" in hosts
        assert f"{two_hosts[1]['address']}\tpt-lab-b" in hosts, "the edited line stays as edited"
        assert f"{third.address}\tpt-lab-c" in hosts
        assert _on("pt-lab-a", "getent", "hosts", "pt-lab-c").stdout.split()[0] == third.address
        assert _on("pt-lab-c", "getent", "hosts", "svc.example.test").stdout.split()[0] == str(
            two_hosts[1]["address"]
        ), "a fresh host gets every lab host's aliases"
    finally:
        lab.down(["pt-lab-c"])
    try:
        hosts = _on("pt-lab-a", "cat", "/etc/hosts").stdout.splitlines()
        assert "192.0.2.7 svc.example.test" in hosts
        assert not [line for line in hosts if "pt-lab-c" in line]
        address = _on("pt-lab-a", "getent", "hosts", "svc.example.test").stdout.split()[0]
        assert address == "192.0.2.7"
    finally:
        _on("pt-lab-a", "mv", "/etc/hosts.before", "/etc/hosts")
