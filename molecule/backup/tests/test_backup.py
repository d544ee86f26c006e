"""Backups on real hosts: seed → backup → change → backup → restore the FIRST run onto a fresh host,
equal row for row and byte for byte, and the app answers there; refusals, faults, secrets, the CLI.

The tests run in file order and build on each other (the state of each backup is kept in STATE).
What "equal" means here is measured independently of the backup program: ordered COPY output of
every table and sha256 of every file, read with psql and Python on the hosts themselves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra
import testinfra.utils.ansible_runner
import yaml

sys.path.insert(0, str(Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "molecule" / "shared"))
import lab_checks

from fedictl.lab import Lab

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
VARS = RUNNER.get_variables("bk-src")
APP = VARS["fedictl_apps"]["mastodon"]
DB, OWNER = APP["db_name"], APP["db_user"]
STANDIN = VARS["bk_standin_dir"]
MEDIA = f"{STANDIN}/media"
CACHE = f"{MEDIA}/cache"
CONFIG_FILE = f"{STANDIN}/env.production"
HEALTH = f"http://127.0.0.1:{VARS['bk_standin_port']}/health"
PROGRAM = "/usr/local/sbin/fedictl-backup"
STATUS = "/var/lib/fedictl/backup/status.json"
PROM = "/var/lib/prometheus/node-exporter/fedictl_backup.prom"
KEY_FILE = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "bk_repo_key"
TABLES = ("public.accounts", "public.settings", "public.statuses")

STATE: dict[str, Any] = {}  # what each backup run saw, filled as the tests go
OUTPUTS: list[str] = []  # every output the tests saw; none may hold a secret


def _host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}")


SRC, DST = _host("bk-src"), _host("bk-dst")


def run(host: testinfra.host.Host, command: str, *args: str) -> Any:
    result = host.run(command, *args)
    OUTPUTS.extend([result.stdout, result.stderr])
    return result


def db_state(host: testinfra.host.Host) -> dict[str, Any]:
    """Row count and sha256 of the ordered COPY text of every table; sequence values."""
    state: dict[str, Any] = {}
    for table in TABLES:
        copy = f"COPY (SELECT * FROM {table} ORDER BY 1) TO STDOUT"  # noqa: S608 - constants
        out = host.check_output(
            "runuser -u postgres -- psql -XAt -d %s -c %s | sha256sum", DB, copy
        )
        rows = host.check_output(
            "runuser -u postgres -- psql -XAt -d %s -c %s",
            DB,
            f"SELECT count(*) FROM {table}",  # noqa: S608
        )
        state[table] = (int(rows), out.split()[0])
    for seq in ("accounts_id_seq", "statuses_id_seq"):
        state[seq] = host.check_output(
            "runuser -u postgres -- psql -XAt -d %s -c %s",
            DB,
            f"SELECT last_value || ' ' || is_called FROM {seq}",  # noqa: S608
        )
    return state


FILE_STATE = r"""
import hashlib, json, os, stat, sys
out = {}
def entry(p):
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        return ["link", os.readlink(p)]
    return [hashlib.sha256(open(p, "rb").read()).hexdigest(), oct(st.st_mode & 0o7777)]
for root in sys.argv[1:]:
    if not os.path.isdir(root):
        out[root] = entry(root)
    for d, dirs, files in os.walk(root):
        for n in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out[os.path.join(d, n)] = entry(os.path.join(d, n))
print(json.dumps(out))
"""


def file_state(host: testinfra.host.Host, *roots: str) -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads(
        host.check_output("python3 -c %s %s", FILE_STATE, " ".join(roots))
    )
    return data


def media_state(host: testinfra.host.Host) -> dict[str, list[str]]:
    """The media without the cache (which backups leave out by default)."""
    return {p: v for p, v in file_state(host, MEDIA).items() if not p.startswith(CACHE + "/")}


def snapshots() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(SRC.check_output(PROGRAM + " snapshots"))
    return data


def status(host: testinfra.host.Host = SRC) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(host.file(STATUS).content_string)
    return data


def start_backup(unit: str = "fedictl-backup.service") -> Any:
    result = run(SRC, "systemctl start %s", unit)
    journal = run(SRC, "journalctl -u %s -o cat --no-pager -n 200", unit)
    return result, journal.stdout


def playbook(name: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """ansible-playbook with the JSON callback: exit code, Ansible's report, raw stderr."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    env.pop("ANSIBLE_CALLBACK_RESULT_FORMAT", None)
    proc = subprocess.run(
        ["ansible-playbook", "-i", INVENTORY, *args, str(PROJECT / "playbooks" / name)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    OUTPUTS.extend([proc.stdout, proc.stderr])
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr


def failures(report: dict[str, Any]) -> list[str]:
    """Failed task results as 'task: message', from Ansible's JSON report."""
    found = []
    for play in report.get("plays", []):
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("failed"):
                    found.append(
                        f"{task['task']['name']}: {result.get('stderr') or result.get('msg')}"
                    )
    return found


def kind_errors(last_error: str) -> dict[str, str]:
    """The status file's last_error ("db: ...; files: ...") as {kind: error}."""
    parts = re.split(r"(?:^|; )(db|files|config): ", last_error)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def restore(run_id: str, *, force: bool = False, report_dir: str | None = None) -> Any:
    extra = {
        "fedictl_restore_app": "mastodon",
        "fedictl_restore_snapshot": run_id,
        "fedictl_restore_to": "bk-dst",
        "fedictl_restore_force": force,
    }
    if report_dir:
        extra["fedictl_report_dir"] = report_dir
    return playbook("restore.yml", "-e", json.dumps(extra))


# --- the role's result --------------------------------------------------------------------------


def test_timers_scheduled_as_configured() -> None:
    for timer, calendar in (
        ("fedictl-backup.timer", VARS["backup_on_calendar"]),
        ("fedictl-backup-check.timer", VARS["backup_check_on_calendar"]),
    ):
        unit = SRC.service(timer)
        assert unit.is_enabled and unit.is_running, timer
        shown = SRC.check_output(
            "systemctl show -p TimersCalendar -p RandomizedDelayUSec -p Persistent %s", timer
        )
        assert f"OnCalendar={calendar} ;" in shown, shown
        assert "RandomizedDelayUSec=20min" in shown
        assert "Persistent=yes" in shown


def test_secrets_are_files_only_root_reads() -> None:
    for path in (
        "/etc/fedictl/backup/restic-password",
        "/etc/fedictl/backup/restic.env",
        "/etc/fedictl/backup/ssh/id_backup",
    ):
        f = SRC.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), path
    assert SRC.file("/etc/fedictl/backup").mode == 0o700
    assert (
        SRC.file("/etc/fedictl/backup/restic-password").content_string.strip()
        == VARS["vault_restic_password"]
    )
    config = json.loads(SRC.file("/etc/fedictl/backup/config.json").content_string)
    assert config["retention"] == {"daily": 5, "weekly": 3, "monthly": 2}
    assert config["keep_within"] == "3d"
    assert config["databases"] == [{"app": "mastodon", "name": DB, "owner": OWNER}]
    assert config["check_read_data_subset"] == "10%"
    assert config["include_caches"] is False, "caches stay out unless backup_include_caches"


def test_units_are_sandboxed_and_verified_by_systemd() -> None:
    for unit in (
        "fedictl-backup.service",
        "fedictl-backup@mastodon.service",
        "fedictl-backup-check.service",
        "fedictl-backup.timer",
        "fedictl-backup-check.timer",
    ):
        verify = SRC.run("systemd-analyze verify %s", unit)
        assert verify.rc == 0, verify.stderr
    # Lower is safer; systemd calls up to 3.9 "OK". Root is needed (every app's files, setuid to
    # postgres); everything else is taken away. `--threshold` makes it exit 1 above the limit.
    for unit in ("fedictl-backup.service", "fedictl-backup-check.service"):
        security = SRC.run("systemd-analyze security --threshold=30 %s", unit)
        print(security.stdout.splitlines()[-1])
        assert security.rc == 0, security.stdout[-500:]


# --- backup, change, backup ---------------------------------------------------------------------


def test_first_backup_takes_three_tagged_snapshots_and_reports() -> None:
    STATE["db1"], STATE["media1"] = db_state(SRC), media_state(SRC)
    STATE["config1"] = file_state(SRC, CONFIG_FILE)
    assert STATE["db1"]["public.statuses"][0] == 2500
    result, journal = start_backup()
    assert result.rc == 0, journal
    s = status()
    entry = s["apps"]["mastodon"]
    assert s["host"] == "bk-src" and entry["last_error"] is None, s
    assert entry["last_success"] and entry["last_success"].endswith("Z")
    assert set(entry["snapshots"]) == {"db", "files", "config"}
    assert entry["bytes_added"] > 0 and entry["duration_seconds"] >= 0
    assert set(entry["snapshot_bytes"]) == {"db", "files", "config"}
    assert all(size > 0 for size in entry["snapshot_bytes"].values()), entry
    f = SRC.file(STATUS)
    assert (f.user, f.mode) == ("root", 0o644)
    snaps = snapshots()
    run1 = {x["run"] for x in snaps}
    assert len(run1) == 1 and len(snaps) == 3
    STATE["run1"] = run1.pop()
    assert {x["kind"] for x in snaps} == {"db", "files", "config"}
    assert {x["host"] for x in snaps} == {"bk-src"}
    assert {x["id"] for x in snaps} == set(entry["snapshots"].values())
    prom = SRC.file(PROM).content_string
    assert 'fedictl_backup_last_attempt_success{app="mastodon"} 1' in prom
    assert 'fedictl_backup_last_success_timestamp_seconds{app="mastodon"} 1' in prom


def test_caches_stay_out_and_the_manifest_records_every_file() -> None:
    files_snap = next(x for x in snapshots() if x["kind"] == "files" and x["run"] == STATE["run1"])
    listing = SRC.check_output(
        "set -a; . /etc/fedictl/backup/restic.env; restic -o %s ls --json %s",
        json.loads(SRC.file("/etc/fedictl/backup/config.json").content_string)["restic_options"][1],
        files_snap["id"],
    )
    paths = {json.loads(line).get("path") for line in listing.splitlines() if line.startswith("{")}
    assert f"{MEDIA}/accounts/avatars/private.key" in paths
    assert not [p for p in paths if p and p.startswith(CACHE)], "the cache was backed up"
    regular = [p for p, v in STATE["media1"].items() if v[0] != "link"]
    assert files_snap["files"] >= len(regular) + 1  # + the manifest


def test_dump_is_made_by_the_servers_own_major_version() -> None:
    db_snap = next(x for x in snapshots() if x["kind"] == "db" and x["run"] == STATE["run1"])
    manifest = json.loads(
        SRC.check_output(
            "set -a; . /etc/fedictl/backup/restic.env; restic -o %s dump %s %s",
            json.loads(SRC.file("/etc/fedictl/backup/config.json").content_string)[
                "restic_options"
            ][1],
            db_snap["id"],
            db_snap["paths"][0] + "/manifest.json",
        )
    )
    server = SRC.check_output("runuser -u postgres -- psql -XAt -c 'SHOW server_version_num'")
    assert manifest["server_major"] == int(server) // 10000
    assert manifest["toc_entries"] > 5
    assert manifest["tables"]["public.statuses"]["rows"] == 2500
    assert set(manifest["tables"]) == set(TABLES)


def test_second_backup_after_a_small_change() -> None:
    for query in (
        "INSERT INTO statuses (account_id, text, visibility, created_at)"
        " VALUES (1, 'after the first backup', 0, '2026-01-01 00:00:00+00')",
        "UPDATE accounts SET display_name = 'renamed' WHERE id = 7",
        "DELETE FROM settings WHERE var = 'empty'",
    ):
        SRC.check_output("runuser -u postgres -- psql -XAt -d %s -c %s", DB, query)
    changed = next(p for p, v in STATE["media1"].items() if v[0] != "link" and "original" in p)
    SRC.check_output("sh -c 'printf changed >> %s'", changed)
    SRC.check_output(
        "install -o bkstandin -g bkstandin -m 0644 /etc/hostname %s/new-file.txt", MEDIA
    )
    STATE["db2"], STATE["media2"] = db_state(SRC), media_state(SRC)
    assert STATE["db2"] != STATE["db1"] and STATE["media2"] != STATE["media1"]
    result, journal = start_backup("fedictl-backup@mastodon.service")
    assert result.rc == 0, journal
    entry = status()["apps"]["mastodon"]
    assert entry["last_error"] is None and entry["last_run"] != STATE["run1"]
    STATE["run2"] = entry["last_run"]
    runs = {x["run"] for x in snapshots()}
    assert runs == {STATE["run1"], STATE["run2"]}, "retention must keep both runs (keep-within 3d)"
    assert "files, 2 read for checksums" in journal, "unchanged files must not be read again"


# --- restore the first run onto the fresh host --------------------------------------------------


def test_restore_first_run_onto_the_fresh_host() -> None:
    assert not DST.file(MEDIA).exists and not DST.exists("psql"), "bk-dst must start fresh"
    with tempfile.TemporaryDirectory() as reports:
        rc, report, stderr = restore(STATE["run1"], report_dir=reports)
        assert rc == 0, failures(report) or stderr
        restored = json.loads(Path(reports, "restore.json").read_text())
    assert restored["completed"] and restored["plan"]["run"] == STATE["run1"]
    assert restored["database"]["ok"] and len(restored["database"]["tables"]) == len(TABLES)
    # Row for row and byte for byte, measured apart from the backup program.
    assert db_state(DST) == STATE["db1"]
    assert media_state(DST) == STATE["media1"]
    assert file_state(DST, CONFIG_FILE) == STATE["config1"]
    assert not DST.file(CACHE).exists
    for path in (MEDIA, f"{MEDIA}/accounts/avatars/private.key", CONFIG_FILE):
        assert DST.file(path).user == "bkstandin", path
    assert DST.file(f"{MEDIA}/accounts/avatars/private.key").mode == 0o600
    assert DST.file(CONFIG_FILE).mode == 0o640


def test_the_app_answers_on_the_restored_host() -> None:
    assert DST.service("bk-standin.service").is_running
    health = json.loads(DST.check_output("curl -sf %s", HEALTH))
    # The stand-in logs in with the restored configuration's password and reads the restored rows.
    assert health == {
        "ok": True,
        "accounts": 60,
        "statuses": 2500,
        "media": len([p for p in STATE["media1"]]),
    }


def test_restore_refuses_a_non_empty_database_without_force() -> None:
    rc, report, _ = restore(STATE["run2"])
    assert rc != 0
    messages = failures(report)
    assert any("is not empty" in m and "--force" in m for m in messages), messages
    assert db_state(DST) == STATE["db1"], "a refused restore changed the database"
    assert DST.service("bk-standin.service").is_running, "a refused restore stopped the app"


def _invocation(host: testinfra.host.Host, unit: str) -> str:
    return str(host.check_output("systemctl show --value -p InvocationID %s", unit))


def _last_event(host: testinfra.host.Host, unit: str, verb: str) -> int:
    """Unix second of systemd's last "Stopped"/"Started" message for ``unit``."""
    lines = host.check_output("journalctl -u %s -o short-unix --no-pager _PID=1", unit).splitlines()
    times = [line.split()[0] for line in lines if f": {verb} {unit}" in line]
    assert times, f"no '{verb} {unit}' in the journal"
    return int(float(times[-1]))


def test_restore_with_force_replaces_database_and_files() -> None:
    before = _invocation(DST, "bk-standin.service")
    rc, report, stderr = restore(STATE["run2"], force=True)
    assert rc == 0, failures(report) or stderr
    assert db_state(DST) == STATE["db2"]
    assert media_state(DST) == STATE["media2"]
    aside = DST.check_output("ls -d %s.pre-restore-*", MEDIA).split()
    assert len(aside) == 1, "the replaced media are kept aside"
    assert DST.service("bk-standin.service").is_running
    # The app was stopped while its data was replaced: it stopped before the old media were moved
    # aside and started again after (unix seconds), as a new invocation.
    assert _invocation(DST, "bk-standin.service") != before
    moved = int(DST.check_output("stat -c %%Z %s", aside[0]))
    stopped = _last_event(DST, "bk-standin.service", "Stopped")
    started = _last_event(DST, "bk-standin.service", "Started")
    assert stopped <= moved <= started, (stopped, moved, started)


def test_restore_onto_a_host_without_the_app_is_refused_before_any_data_changes() -> None:
    """bk-dst is outside the app's group, so the inventory does not say how to install the app
    there: with the app's unit gone, the restore says so and what to change, even with --force,
    and touches no data (a host of the group gets the app installed: molecule/mastodon)."""
    unit = "/etc/systemd/system/bk-standin.service"
    before = (db_state(DST), media_state(DST))
    DST.run_expect(
        [0], f"systemctl stop bk-standin && mv {unit} {unit}.away && systemctl daemon-reload"
    )
    try:
        rc, report, _ = restore(STATE["run1"], force=True)
    finally:
        DST.run_expect(
            [0], f"mv {unit}.away {unit} && systemctl daemon-reload && systemctl start bk-standin"
        )
    assert rc != 0
    messages = failures(report)
    assert any(
        "not installed on bk-dst (no bk-standin.service)" in m
        and "does not put bk-dst in the mastodon group" in m
        for m in messages
    ), messages
    assert (db_state(DST), media_state(DST)) == before, "a refused restore changed data"


def test_comparison_catches_a_changed_row_and_a_changed_file() -> None:
    """The checks a restore and a drill rely on can fail: live data on bk-dst against run 2."""
    ids = {x["kind"]: x["id"] for x in snapshots() if x["run"] == STATE["run2"]}

    def verify(kind: str) -> tuple[int, dict[str, Any]]:
        result = run(
            DST, PROGRAM + " verify --app mastodon --kind %s --snapshot %s", kind, ids[kind]
        )
        return result.rc, json.loads(result.stdout)

    assert verify("db") == (0, verify("db")[1]) and verify("files")[0] == 0
    victim = f"{MEDIA}/accounts/avatars/private.key"
    try:
        DST.check_output(
            "runuser -u postgres -- psql -XAt -d %s -c %s",
            DB,
            "UPDATE statuses SET score = score + 1e-9 WHERE id = 1234",
        )
        DST.check_output("sh -c 'printf x >> %s'", victim)
        rc, db = verify("db")
        assert rc == 1 and not db["ok"]
        assert [t["table"] for t in db["tables"] if not t["ok"]] == ["public.statuses"]
        rc, files = verify("files")
        assert rc == 1 and files["mismatches"] == [{"path": victim, "problem": "content differs"}]
    finally:
        rc, report, stderr = restore(STATE["run2"], force=True)
        assert rc == 0, failures(report) or stderr
    assert verify("db")[0] == 0 and verify("files")[0] == 0


# --- faults -------------------------------------------------------------------------------------


def test_unreachable_repository_fails_loudly_and_keeps_earlier_snapshots() -> None:
    before = {x["id"] for x in snapshots()}
    last_success = status()["apps"]["mastodon"]["last_success"]
    hosts = SRC.file("/etc/hosts").content_string
    try:
        # The repository's name now points at an address the lab refuses at once (TEST-NET-1).
        SRC.check_output(
            "sed -i 's/ backups.bk.test//' /etc/hosts && echo '192.0.2.1 backups.bk.test'"
            " >> /etc/hosts"
        )
        result, journal = start_backup()
        assert result.rc != 0
        assert SRC.run("systemctl is-failed fedictl-backup.service").stdout.strip() == "failed"
        entry = status()["apps"]["mastodon"]
        errors = kind_errors(entry["last_error"])
        assert set(errors) == {"db", "files", "config"}, entry
        assert all(e.startswith("repository unreachable") for e in errors.values()), entry
        assert entry["last_success"] == last_success
        assert "repository unreachable" in journal
        assert (
            'fedictl_backup_last_attempt_success{app="mastodon"} 0' in SRC.file(PROM).content_string
        )
    finally:
        SRC.check_output("printf '%%s' %s > /etc/hosts", hosts)
    assert {x["id"] for x in snapshots()} == before


def test_disk_full_fails_loudly_and_earlier_snapshots_stay_restorable() -> None:
    before = {x["id"] for x in snapshots()}
    big = f"{MEDIA}/too-big.bin"
    try:
        # 80 MiB of random data cannot fit the repository's 64 MiB file system.
        SRC.check_output("head -c 83886080 /dev/urandom > %s", big)
        result, journal = start_backup()
        assert result.rc != 0
        entry = status()["apps"]["mastodon"]
        errors = kind_errors(entry["last_error"])
        assert "no space left on device" in errors.get("files", ""), entry
        # The kinds run side by side: the small db and config snapshots may have found room
        # before the files filled the disk, or not; nothing else may have gone wrong.
        assert all("no space left on device" in e for e in errors.values()), entry
        assert "no space left on device" in journal
    finally:
        SRC.check_output("rm -f %s", big)
    assert before <= {x["id"] for x in snapshots()}, "a failed backup removed a snapshot"
    check = run(SRC, "systemctl start fedictl-backup-check.service")
    assert check.rc == 0, SRC.run("journalctl -u fedictl-backup-check -o cat -n 30").stdout
    # Still restorable: run 2 onto bk-dst again, equal to what it was.
    rc, report, stderr = restore(STATE["run2"], force=True)
    assert rc == 0, failures(report) or stderr
    assert db_state(DST) == STATE["db2"] and media_state(DST) == STATE["media2"]
    # And the next backup, with the space back, succeeds.
    result, journal = start_backup()
    assert result.rc == 0, journal
    assert status()["apps"]["mastodon"]["last_error"] is None


def test_weekly_check_reports_success() -> None:
    check = status()["check"]
    assert check["last_error"] is None and check["last_success"]
    assert "fedictl_backup_check_last_attempt_success 1" in SRC.file(PROM).content_string


def test_retention_groups_each_app_kind_and_host_apart() -> None:
    """What the nightly `restic forget` (--group-by host,paths) would keep with keep-last 1: the
    newest snapshot of each kind, from the real restic, without forgetting anything."""
    options = json.loads(SRC.file("/etc/fedictl/backup/config.json").content_string)
    plan = json.loads(SRC.check_output(
        "set -a; . /etc/fedictl/backup/restic.env; restic -o %s forget --dry-run --json "
        "--host bk-src --tag app:mastodon --group-by host,paths --keep-last 1",
        options["restic_options"][1],
    ))  # fmt: skip
    assert len(plan) == 3, "one group per kind"
    newest = {}
    for x in snapshots():
        if x["time"] > newest.get(x["kind"], {"time": ""})["time"]:
            newest[x["kind"]] = x
    kept = {k["id"] for group in plan for k in group["keep"]}
    assert kept == {x["id"] for x in newest.values()}
    assert len(snapshots()) > 3, "nothing was forgotten"


# --- S3 and rest-server repositories ------------------------------------------------------------

S3_SECRET = str(VARS["vault_s3_secret_access_key"])  # TEST-ONLY, molecule.yml
DST_ADDRESS = RUNNER.get_variables("bk-dst")["ansible_host"]
# Each remote backend on bk-dst, from Debian's packages (prepare.yml), test-only: how it starts,
# the repository URL, the inventory's extra settings, and a URL listing its snapshot objects.
REMOTES = {
    "s3": {
        # moto's S3 server accepts any key: this proves what fedictl sends, not that a provider
        # checks it.
        "start": f"python3 -m moto.server -H {DST_ADDRESS} -p 9000",
        "repository": f"s3:http://{DST_ADDRESS}:9000/fedictl-bk/org",
        "vars": {"fedictl_s3": {"access_key_id": "TESTONLYS3ACCESSKEY", "region": "us-east-1"}},
        "env": ["AWS_ACCESS_KEY_ID=TESTONLYS3ACCESSKEY", f"AWS_SECRET_ACCESS_KEY={S3_SECRET}",
                "AWS_DEFAULT_REGION=us-east-1"],
        "listing": f"http://{DST_ADDRESS}:9000/fedictl-bk?prefix=org/snapshots/",
        "count": "<Key>org/snapshots/",
    },
    "rest": {
        "start": f"restic-rest-server --path /srv/bk-rest --listen {DST_ADDRESS}:8000 --no-auth",
        "repository": f"rest:http://{DST_ADDRESS}:8000/org",
        "vars": {},
        "env": [],
        "listing": f"http://{DST_ADDRESS}:8000/org/snapshots/",
        "count": '"name"',
    },
}  # fmt: skip


@pytest.mark.parametrize("backend", ["s3", "rest"])
def test_a_remote_repository_is_initialised_backed_up_to_and_read_back(backend: str) -> None:
    """The role with an s3: or rest: repository on a server of that kind (on bk-dst): it
    initialises the repository, a backup puts its three kinds there, each reads back equal to
    bk-src's live data, and restic.env holds the settings for root only. Then bk-src goes back to
    the sftp repository."""
    remote = REMOTES[backend]
    DST.run_expect([0], f"systemd-run --unit=bk-{backend} --property=Restart=no {remote['start']}")
    settings = {
        "fedictl_backup": {**VARS["fedictl_backup"], "repository": remote["repository"]},
        **remote["vars"],
    }
    try:
        for _ in range(40):  # the server takes a moment to start
            if SRC.run("curl -s -o /dev/null %s", remote["listing"]).rc == 0:
                break
            time.sleep(0.5)
        rc, report, stderr = playbook("backup.yml", "--limit", "bk-src", "-e", json.dumps(settings))
        assert rc == 0, failures(report) or stderr
        env = SRC.file("/etc/fedictl/backup/restic.env")
        assert (env.user, env.mode) == ("root", 0o600)
        lines = env.content_string.splitlines()
        assert f"RESTIC_REPOSITORY={remote['repository']}" in lines
        assert set(remote["env"]) <= set(lines), "the backend's settings reach restic"
        result, journal = start_backup()
        assert result.rc == 0, journal
        taken = snapshots()
        assert sorted(x["kind"] for x in taken) == ["config", "db", "files"], taken
        assert {x["id"] for x in taken} == set(status()["apps"]["mastodon"]["snapshots"].values())
        for snap in taken:
            verify = run(
                SRC, PROGRAM + " verify --app mastodon --kind %s --snapshot %s", snap["kind"],
                snap["id"],
            )  # fmt: skip
            assert verify.rc == 0 and json.loads(verify.stdout)["ok"], verify.stdout[-2000:]
        # The snapshots are objects on that server, as its own listing shows.
        listing = SRC.check_output(
            "curl -sf -H 'Accept: application/vnd.x.restic.rest.v2' '%s'", remote["listing"]
        )
        assert listing.count(remote["count"]) == 3, listing[:2000]
        OUTPUTS.append(journal)
    finally:
        rc, report, stderr = playbook("backup.yml", "--limit", "bk-src")
        DST.run("systemctl stop bk-%s", backend)
    assert rc == 0, failures(report) or stderr
    assert "RESTIC_REPOSITORY=sftp:" in SRC.file("/etc/fedictl/backup/restic.env").content_string
    assert len(snapshots()) > 3, "the sftp repository's snapshots are listed again"


# --- the CLI against an inventory made by `fedictl init` ----------------------------------------


@pytest.fixture(scope="module")
def cli_inventory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """A project root with an inventory for bk-src and bk-dst written by `fedictl init`."""
    from fedictl import vault

    tmp = tmp_path_factory.mktemp("cli")
    root = tmp / "project"
    root.mkdir()
    for item in ("playbooks", "roles", "plugins", "ansible.cfg"):
        (root / item).symlink_to(PROJECT / item)
    env = dict(os.environ, FEDICTL_ROOT=str(root), XDG_CONFIG_HOME=str(tmp / "config"))
    for key in list(env):
        if key.startswith(("ANSIBLE_", "MOLECULE_")):
            del env[key]
    lab_hosts = {h.name: h for h in Lab().hosts()}
    hosts = {h: lab_hosts[h] for h in ("bk-src", "bk-dst")}
    answers = {
        "org_name": "Backup Scenario",
        "admin_email": "admin@bk.test",
        "admin_ssh_keys": [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7IZTrxpf6T5usv2NWpzBzl5DZyIF09/e2baptVByGB t@bk"
        ],
        "apps": {"mastodon": {"local_domain": "social.bk.test", "db_name": DB, "db_user": OWNER}},
        "servers": [
            {
                "name": n,
                "address": v.address,
                "user": "root",
                "port": 22,
                "identity_file": v.identity_file,
                "host_key_checking": False,
            }
            for n, v in hosts.items()
        ],
        "smtp": {
            "host": "smtp.bk.test",
            "port": 587,
            "tls": "starttls",
            "user": "",
            "from_address": "n@bk.test",
        },
        "acme": {"email": "admin@bk.test"},
        "backup": {
            "repository": VARS["fedictl_backup"]["repository"],
            "retention": VARS["fedictl_backup"]["retention"],
        },
    }
    (tmp / "answers.yml").write_text(yaml.safe_dump(answers))
    fedictl = str(Path(sys.executable).parent / "fedictl")
    init = subprocess.run(
        [fedictl, "init", "bkcli", "--answers", str(tmp / "answers.yml")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert init.returncode == 0, init.stderr
    inv = root / "inventories" / "bkcli"
    password = tmp / "config" / "fedictl" / "vault" / "bkcli.pass"
    secret = vault.load_secret(password)
    data = vault.read_vault(inv / "group_vars/all/vault.yml", secret)
    data.update(
        vault_restic_password=VARS["vault_restic_password"],
        vault_mastodon_db_password=VARS["vault_mastodon_db_password"],
        vault_backup_ssh_private_key=KEY_FILE.read_text(),
    )
    vault.write_vault(inv / "group_vars/all/vault.yml", data, secret)
    return inv, password, env


def fedictl_cli(
    cli: tuple[Path, Path, dict[str, str]], *args: str
) -> subprocess.CompletedProcess[str]:
    inv, password, env = cli
    fedictl = str(Path(sys.executable).parent / "fedictl")
    proc = subprocess.run(
        [fedictl, "backup", *args, "-i", str(inv), "--vault-password-file", str(password)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc


def test_cli_run_and_list(cli_inventory: tuple[Path, Path, dict[str, str]]) -> None:
    ran = fedictl_cli(cli_inventory, "run", "--app", "mastodon", "--json")
    assert ran.returncode == 0, ran.stderr[-3000:]
    hosts = json.loads(ran.stdout)["hosts"]
    assert hosts["bk-src"]["apps"]["mastodon"]["last_error"] is None
    listed = fedictl_cli(cli_inventory, "list", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    runs = json.loads(listed.stdout)
    assert {STATE["run1"], STATE["run2"]} <= {r["run"] for r in runs}
    assert all(
        set(r["snapshots"]) == {"db", "files", "config"}
        for r in runs
        if r["run"] in (STATE["run1"], STATE["run2"])
    )
    table = fedictl_cli(cli_inventory, "list", "--app", "mastodon")
    assert STATE["run1"] in table.stdout and "mastodon:" in table.stdout


def test_cli_drill_on_a_lab_host_passes(cli_inventory: tuple[Path, Path, dict[str, str]]) -> None:
    drill = fedictl_cli(
        cli_inventory, "drill", "--app", "mastodon", "--lab-host", "bk-drill", "--json"
    )
    assert drill.returncode == 0, drill.stderr[-4000:]
    result = json.loads(drill.stdout)
    assert result["ok"] and result["target"] == "bk-drill"
    tables = {t["table"]: t for t in result["report"]["database"]["tables"]}
    assert set(tables) == set(TABLES) and all(t["ok"] for t in tables.values())
    assert result["report"]["files"]["bk-drill:files"]["checked"] > 60
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "fedictl"), "lab", "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "bk-drill" not in {h["name"] for h in json.loads(listed.stdout)}, "the drill host stays"


def test_cli_drill_never_overwrites_a_host_holding_data(
    cli_inventory: tuple[Path, Path, dict[str, str]],
) -> None:
    """--to names a spare server; bk-dst holds a restored database: the drill is refused, fails."""
    before = db_state(DST)
    drill = fedictl_cli(cli_inventory, "drill", "--app", "mastodon", "--to", "bk-dst", "--json")
    assert drill.returncode == 1
    assert json.loads(drill.stdout)["ok"] is False
    assert "is not empty" in drill.stderr
    assert db_state(DST) == before


# --- secrets and check mode ---------------------------------------------------------------------


def test_no_secret_in_any_output_log_or_status() -> None:
    secrets = [VARS["vault_restic_password"], VARS["vault_mastodon_db_password"], S3_SECRET]
    key_lines = [line for line in KEY_FILE.read_text().splitlines() if "PRIVATE KEY" not in line]
    secrets += [line for line in key_lines if len(line) > 20]
    # A fresh run of converge with the normal callback, verbose, and a --check --diff run.
    for args in (["-v"], ["--check", "--diff", "-v"]):
        proc = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                INVENTORY,
                *args,
                str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]) / "converge.yml"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:]
        OUTPUTS.extend([proc.stdout, proc.stderr])
    for host in (SRC, DST):
        OUTPUTS.append(host.check_output("journalctl -o cat --no-pager"))
        for path in (STATUS, PROM, "/etc/fedictl/backup/config.json"):
            if host.file(path).exists:
                OUTPUTS.append(host.file(path).content_string)
    leaked = []
    for i, secret in enumerate(secrets):
        for text in OUTPUTS:
            at = text.find(secret)
            if at >= 0:  # where, with the secret itself masked
                leaked.append(f"#{i}: ...{text[max(0, at - 200) : at]}<SECRET>...")
    assert not leaked, "secret(s) appeared in output, logs or status:\n" + "\n".join(leaked[:5])
    assert len(OUTPUTS) > 40


def test_check_mode_reports_no_change() -> None:
    stats = lab_checks.check_mode_changes()
    assert stats.get("bk-src", {}).get("changed") == 0, stats


def test_idempotent_with_the_gates_open() -> None:
    stats = lab_checks.gates_open_changes()
    assert stats.get("bk-src", {}).get("changed") == 0, stats
    assert stats["bk-src"]["failures"] == 0, stats
