"""Verify the common role on a lab host, as seen from the host itself, from a second lab host
(cm-probe) and from the controller, with the values converge.yml sets away from the defaults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from lab_checks import check_mode_changes, gates_open_changes

testinfra_hosts = ["cm-target"]

SCENARIO = Path(__file__).resolve().parents[1]
ROLE_DEFAULTS: dict[str, Any] = yaml.safe_load(
    (SCENARIO.parents[1] / "roles/common/defaults/main.yml").read_text()
)
CONVERGE_VARS: dict[str, Any] = yaml.safe_load((SCENARIO / "converge.yml").read_text())[0]["vars"]

# The lowest lynis hardening index accepted on a converged lab host. Lab hosts are containers whose
# /proc/sys is read-only: sysctl keys, swap, auditd and process accounting cannot apply there, so a
# VM scores higher. Measured on a lab host: 60 fresh, 75-76 converged (tests/README.md).
LYNIS_MIN_INDEX = 73
# Lynis test left out: PKGS-7392 (pending security updates) depends on the day the lab's base image
# was built, not on the role; on a real host unattended-upgrades installs them every day.
LYNIS_PROFILE = "skip-test=PKGS-7392\n"

# Run on the probe: how a TCP connection ends (dropped packets time out, closed ports refuse).
# Listed as a script so that the result is a word this test prints, not an error text to match.
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except socket.timeout:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""


def setting(name: str) -> Any:
    """The value converge.yml gives a role variable, else the role's default."""
    return CONVERGE_VARS.get(name, ROLE_DEFAULTS[name])


@pytest.fixture(scope="module")
def probe() -> Any:
    return testinfra.get_host(
        "ansible://cm-probe", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


@pytest.fixture(scope="module")
def address(host: Any) -> str:
    return str(host.ansible.get_variables()["ansible_host"])


@pytest.fixture(scope="module")
def netfilter(host: Any) -> None:
    """Skip firewall tests on a lab host that may not load nftables rules (no CAP_NET_ADMIN)."""
    probe = host.run("nft list tables")
    if probe.rc != 0:
        pytest.skip(
            "this lab host may not load nftables rules (no CAP_NET_ADMIN in its network namespace: "
            f"{probe.stderr.strip()}); the role wrote /etc/nftables.conf without loading it"
        )


def connect(probe: Any, address: str, port: int) -> str:
    return str(probe.check_output("python3 -c %s %s %s", CONNECT, address, str(port)))


def test_check_mode_on_the_converged_host_changes_nothing() -> None:
    stats = check_mode_changes()
    assert stats["cm-target"]["failures"] == 0
    assert stats["cm-target"]["changed"] == 0


def test_idempotent_with_the_gates_open() -> None:
    stats = gates_open_changes()
    assert stats["cm-target"]["failures"] == 0, stats
    assert stats["cm-target"]["changed"] == 0, stats


def test_firewall_table_has_a_drop_policy_and_the_ssh_rule(host: Any, netfilter: None) -> None:
    ruleset = json.loads(host.check_output("nft --json list table inet fedictl"))["nftables"]
    chains = {item["chain"]["name"]: item["chain"] for item in ruleset if "chain" in item}
    assert chains["input"]["policy"] == "drop"
    assert chains["forward"]["policy"] == "drop"
    rules = [item["rule"] for item in ruleset if "rule" in item]
    ssh_rules = [r for r in rules if r["chain"] == "input" and r.get("comment") == "ssh"]
    assert len(ssh_rules) == 1
    expr = ssh_rules[0]["expr"]
    assert {"accept": None} in expr
    assert any(
        "match" in e
        and e["match"]["left"] == {"payload": {"protocol": "tcp", "field": "dport"}}
        and e["match"]["right"] == 22
        for e in expr
    )


def test_firewall_drops_what_is_not_opened(
    host: Any, probe: Any, address: str, netfilter: None
) -> None:
    # 8081 is not opened; 8082 is opened to the probe only; 8083 to another network; 8084 to all.
    ports = [8081, 8082, 8083, 8084]
    for port in ports:
        host.run("systemctl stop cm-listen-%s", str(port))
        host.check_output(
            "systemd-run --unit=cm-listen-%s --collect python3 -m http.server --bind 0.0.0.0 %s",
            str(port),
            str(port),
        )
    try:
        for port in ports:
            for _ in range(50):
                if host.socket(f"tcp://0.0.0.0:{port}").is_listening:
                    break
                time.sleep(0.1)
        assert connect(probe, address, 22) == "open"
        assert connect(probe, address, 8081) == "timeout"
        assert connect(probe, address, 8082) == "open"
        assert connect(probe, address, 8083) == "timeout"
        assert connect(probe, address, 8084) == "open"
        # HTTP stays closed: common_firewall_open_http is false here, and nothing listens on 80.
        assert connect(probe, address, 80) == "timeout"
    finally:
        for port in ports:
            host.run("systemctl stop cm-listen-%s", str(port))


def banned_addresses(host: Any) -> list[str]:
    cmd = host.run("nft --json list set inet f2b-table addr-set-sshd")
    if cmd.rc != 0:  # fail2ban makes its table at the first ban
        return []
    sets = [item["set"] for item in json.loads(cmd.stdout)["nftables"] if "set" in item]
    elements = sets[0].get("elem", []) if sets else []
    return [e["elem"]["val"] if isinstance(e, dict) else e for e in elements]


def test_fail2ban_bans_an_address_after_maxretry_failures(
    host: Any, probe: Any, address: str, netfilter: None
) -> None:
    probe_address = str(probe.ansible.get_variables()["ansible_host"])
    assert probe_address not in banned_addresses(host)
    try:
        for _ in range(setting("common_fail2ban_maxretry") + 2):
            # "|| true": ssh's own exit code 255 would read as a lost connection to the probe.
            probe.run(
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                "-o ConnectTimeout=3 nosuchuser@%s true || true",
                address,
            )
            time.sleep(1)
            if probe_address in banned_addresses(host):
                break
        assert probe_address in banned_addresses(host)
        # fail2ban's nftables action rejects (ICMP port unreachable) rather than drops.
        assert connect(probe, address, 22) != "open"
    finally:
        host.run("fail2ban-client set sshd unbanip %s", probe_address)
    assert connect(probe, address, 22) == "open"


def test_sshd_runs_with_the_hardened_settings(host: Any) -> None:
    effective = dict(
        line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["permitrootlogin"] == "without-password"  # prohibit-password's old name
    assert effective["x11forwarding"] == "no"
    assert effective["allowagentforwarding"] == "no"
    assert effective["allowtcpforwarding"] == "no"
    assert effective["maxauthtries"] == "3"
    assert effective["maxsessions"] == str(setting("common_ssh_max_sessions"))
    assert effective["logingracetime"] == "30"
    assert effective["clientaliveinterval"] == "300"
    assert effective["kexalgorithms"] == ",".join(setting("common_ssh_kex_algorithms"))
    assert effective["ciphers"] == ",".join(setting("common_ssh_ciphers"))
    assert effective["macs"] == ",".join(setting("common_ssh_macs"))
    assert host.service("ssh").is_running


def test_admin_logs_in_with_the_key_and_has_sudo(host: Any, address: str) -> None:
    variables = host.ansible.get_variables()
    identity = variables["ansible_private_key_file"]
    admin = setting("common_admin_user")
    argv = [
        "ssh", "-i", str(identity), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
        f"{admin}@{address}", "sudo", "-n", "id", "-u",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    keys = host.file(f"/home/{admin}/.ssh/authorized_keys")
    assert keys.user == admin
    assert keys.mode == 0o600
    assert host.file("/etc/sudoers.d/fedictl-admin").mode == 0o440


def test_unattended_security_upgrades_are_configured(host: Any) -> None:
    assert host.package("unattended-upgrades").is_installed
    config = json.loads(
        host.check_output(
            "python3 -c %s",
            "import apt_pkg, json; apt_pkg.init_config(); c = apt_pkg.config; print(json.dumps("
            "{'origins': c.value_list('Unattended-Upgrade::Origins-Pattern'),"
            " 'lists': c.find('APT::Periodic::Update-Package-Lists'),"
            " 'upgrade': c.find('APT::Periodic::Unattended-Upgrade')}))",
        )
    )
    assert config == {
        "origins": setting("common_unattended_upgrades_origins"),
        "lists": "1",
        "upgrade": "1",
    }
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert host.service(timer).is_enabled


def test_apt_fetches_the_security_suite(host: Any) -> None:
    suites = host.check_output(
        "apt-get indextargets --no-release-info --format %s", "$(RELEASE)"
    ).split()
    assert "trixie-security" in suites


def test_journald_limits_are_in_effect(host: Any) -> None:
    # journald reads these files in this order; the last assignment of a key wins.
    merged = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    effective = dict(
        line.split("=", 1) for line in merged.splitlines() if "=" in line and line[0] not in "#;"
    )
    assert effective["SystemMaxUse"] == setting("common_journald_max_use")
    assert effective["MaxRetentionSec"] == setting("common_journald_max_retention")
    assert effective["Storage"] == setting("common_journald_storage")


def test_firewall_file_is_written_even_where_it_cannot_be_loaded(host: Any) -> None:
    rules = host.file("/etc/nftables.conf").content_string
    assert "table inet fedictl {" in rules
    assert "policy drop;" in rules
    assert 'tcp dport 22 accept comment "ssh"' in rules
    assert "192.0.2.0/24" in rules  # common_firewall_private_networks
    assert "tcp dport { 80, 443 }" not in rules  # common_firewall_open_http: false


def test_sysctl_file_holds_the_defaults_and_the_extras(host: Any) -> None:
    content = host.file("/etc/sysctl.d/90-fedictl.conf").content_string
    written = dict(
        line.split(" = ", 1) for line in content.splitlines() if line and not line.startswith("#")
    )
    wanted = {**setting("common_sysctl"), **setting("common_sysctl_extra")}
    assert written == {key: str(value) for key, value in wanted.items()}


def test_time_zone_and_locale(host: Any) -> None:
    assert host.check_output("timedatectl show --property=Timezone --value") == setting(
        "common_timezone"
    )
    language, _, _ = setting("common_locale").partition(".")
    assert f"{language}.utf8" in host.check_output("locale -a").split()
    assert f"LANG={setting('common_locale')}" in host.file("/etc/default/locale").content_string
    # A container must not try to run timesyncd, but it is enabled for a VM started from this disk.
    assert host.service("systemd-timesyncd").is_enabled


def test_fail2ban_jail_uses_the_journal_and_the_settings(host: Any) -> None:
    assert host.service("fail2ban").is_running
    assert host.check_output("fail2ban-client get sshd maxretry") == str(
        setting("common_fail2ban_maxretry")
    )
    journal_match = host.check_output("fail2ban-client get sshd journalmatch")
    assert "_SYSTEMD_UNIT=ssh.service" in journal_match


def test_login_hardening_files(host: Any) -> None:
    assert host.file("/etc/issue").content_string == setting("common_login_banner")
    assert host.file("/etc/issue.net").content_string == setting("common_login_banner")
    login_defs = host.file("/etc/login.defs").content_string
    assert re.search(r"^UMASK\s+027$", login_defs, re.MULTILINE)
    assert re.search(r"^PASS_MIN_DAYS\s+1$", login_defs, re.MULTILINE)
    blocked = host.file("/etc/modprobe.d/fedictl-blacklist.conf").content_string
    for module in setting("common_kernel_modules_blacklist"):
        assert f"install {module} /bin/false" in blocked
    assert "cramfs" not in blocked  # a default left out by converge.yml
    timeout = host.file("/etc/profile.d/fedictl-timeout.sh").content_string
    assert f"TMOUT={setting('common_shell_timeout')}" in timeout
    assert "CRON_CHECK=monthly" in host.file("/etc/default/debsums").content_string
    limits = host.file("/etc/security/limits.d/90-fedictl-coredump.conf").content_string
    assert "hard    core    0" in limits
    assert "pam_tmpdir.so" in host.file("/etc/pam.d/common-session").content_string
    assert "pam_pwquality.so" in host.file("/etc/pam.d/common-password").content_string


def test_container_skips_what_it_cannot_run(host: Any) -> None:
    # Lab hosts are containers: no swap file, no auditd, no process accounting.
    assert not host.file(setting("common_swap_file")).exists
    assert not host.package("auditd").is_installed
    assert not host.package("acct").is_installed


def test_lynis_hardening_index(host: Any, capsys: pytest.CaptureFixture[str]) -> None:
    host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q lynis")
    host.check_output("printf %s > /etc/lynis/custom.prf", LYNIS_PROFILE)
    host.run("lynis audit system --quick --no-colors --no-log --report-file /root/lynis-report.dat")
    report = host.file("/root/lynis-report.dat").content_string
    match = re.search(r"^hardening_index=(\d+)$", report, re.MULTILINE)
    assert match, "lynis wrote no hardening_index"
    index = int(match.group(1))
    with capsys.disabled():
        print(f"\nlynis hardening index on the converged lab host: {index}")
    assert index >= LYNIS_MIN_INDEX
