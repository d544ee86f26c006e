"""`fedictl backup run|list|restore|drill` against a fake ansible-playbook first on PATH.

The fake records its argv and writes the JSON reports the real playbooks hand to the controller
(into the ``fedictl_report_dir`` given with ``-e``), so these tests prove the exact command lines,
the exit codes, what is printed from the reports, and the drill's lab host handling (a fake lab).
The real playbooks run in the molecule scenario `backup`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _inventory_helpers import (
    Project,
    all_secret_values,
    demo_fixture,  # noqa: F401 - fixture
    project_fixture,  # noqa: F401 - fixture
)

from fedictl import backup
from fedictl.lab import Host

FAKE = """#!{python}
import json, os, sys
argv = sys.argv
with open(os.environ["FAKE_RECORD"], "w") as f:
    json.dump({{"argv": argv, "cwd": os.getcwd()}}, f)
extra = json.loads(argv[argv.index("-e") + 1]) if "-e" in argv else {{}}
for name, content in json.loads(os.environ.get("FAKE_REPORTS", "{{}}")).items():
    with open(os.path.join(extra["fedictl_report_dir"], name), "w") as f:
        json.dump(content, f)
print("PLAY RECAP (fake)")
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""

STATUS_OK = {
    "host": "lab1",
    "updated": "2026-11-22T03:20:00Z",
    "apps": {
        "mastodon": {
            "last_success": "2026-11-22T03:20:00Z",
            "last_attempt": "2026-11-22T03:19:10Z",
            "last_error": None,
            "last_run": "20261122T031910Z",
            "snapshots": {"db": "a" * 64, "files": "b" * 64, "config": "c" * 64},
            "last_attempt_snapshots": {"db": "a" * 64, "files": "b" * 64, "config": "c" * 64},
            "bytes_added": 5 * 1024 * 1024,
            "duration_seconds": 50.0,
        },
        "peertube": {
            "last_success": None,
            "last_attempt": "2026-11-22T03:20:00Z",
            "last_error": "files: restic backup failed (exit 1): sftp: no space left on device",
            "last_run": "20261122T032000Z",
            "snapshots": {},
            "last_attempt_snapshots": {"db": "d" * 64},
            "bytes_added": 0,
            "duration_seconds": 3.0,
        },
    },
}


def snap(kind: str, run: str, time: str, sid: str, size: int = 2048) -> dict[str, Any]:
    return {"id": sid * 64, "short_id": sid * 8, "time": time, "host": "lab1", "app": "mastodon",
            "kind": kind, "run": run, "size": size, "files": 3, "added": 100}  # fmt: skip


SNAPSHOTS = [
    snap("db", "20261121T031500Z", "2026-11-21T03:15:02Z", "1"),
    snap("files", "20261121T031500Z", "2026-11-21T03:15:09Z", "2", 3 * 1024**3),
    snap("config", "20261121T031500Z", "2026-11-21T03:15:20Z", "3"),
    snap("db", "20261122T031500Z", "2026-11-22T03:15:02Z", "4"),
    snap("files", "20261122T031500Z", "2026-11-22T03:15:09Z", "5"),
]


def restore_report(ok: bool = True) -> dict[str, Any]:
    return {
        "app": "mastodon",
        "completed": True,
        "drill": True,
        "plan": {
            "run": "20261122T031500Z",
            "time": "2026-11-22T03:15:09Z",
            "snapshots": {"db": {"short_id": "44444444", "host": "lab1"}},
        },
        "database_host": "dr-mastodon",
        "database": {
            "ok": ok,
            "database": "mastodon_production",
            "sequences_checked": 1,
            "sequences_differing": [],
            "tables": [
                {"table": "public.accounts", "rows": 10, "expected_rows": 10, "ok": True},
                {"table": "public.statuses", "rows": 99, "expected_rows": 100, "ok": ok},
            ],
        },
        "files": {"dr-mastodon:files": {"ok": True, "checked": 42, "mismatch_count": 0}},
        "health": {},
    }


@pytest.fixture
def fake(demo: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ansible-playbook first on PATH, and the backup playbooks in the demo project."""
    for name in ("backup", "restore"):
        (demo.root / "playbooks" / f"{name}.yml").write_text("[]\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ansible-playbook"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    for name in ("FAKE_REPORTS", "FAKE_EXIT"):
        monkeypatch.delenv(name, raising=False)
    return record


def recorded(record: Path) -> list[str]:
    argv: list[str] = json.loads(record.read_text())["argv"]
    return argv


def extra_vars(argv: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(argv[argv.index("-e") + 1])
    return data


def reports(monkeypatch: pytest.MonkeyPatch, **files: Any) -> None:
    monkeypatch.setenv("FAKE_REPORTS", json.dumps(files))


def cli(p: Project, *args: str) -> Any:
    return p.invoke("backup", *args[:1], "-i", str(p.inventory()), *args[1:])


# --- run -----------------------------------------------------------------------------------------


def test_run_starts_the_backup_play_and_prints_each_hosts_result(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"run-lab1.json": STATUS_OK})
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = cli(demo, "run")
    assert result.exit_code == 2, "ansible-playbook's exit code"
    argv = recorded(fake)
    assert argv[1:5] == ["-i", str(demo.inventory() / "hosts.yml"), "--vault-password-file",
                         str(demo.password_file())]  # fmt: skip
    assert argv[5:7] == ["--tags", "backup_run"] and argv[-1] == "playbooks/backup.yml"
    assert extra_vars(argv)["fedictl_backup_run_app"] == ""
    assert (
        "lab1 mastodon: ok, run 20261122T031910Z, db=aaaaaaaa files=bbbbbbbb config=cccccccc"
        in (result.stdout)
    )
    assert "5.0 MiB added in 50 s" in result.stdout
    assert "lab1 peertube: FAILED: files: restic backup failed (exit 1): sftp: no space" in (
        result.stdout
    )


def test_run_one_app_passes_it_and_json_gives_the_statuses(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"run-lab1.json": STATUS_OK})
    result = cli(demo, "run", "--app", "mastodon", "--json")
    assert result.exit_code == 0
    assert extra_vars(recorded(fake))["fedictl_backup_run_app"] == "mastodon"
    data = json.loads(result.stdout)
    assert data["exit_code"] == 0 and data["hosts"]["lab1"] == STATUS_OK


def test_a_disabled_app_is_refused_before_ansible_runs(demo: Project, fake: Path) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["pixelfed"]["enabled"] = False
    demo.write_main_vars(main)
    result = cli(demo, "run", "--app", "pixelfed")
    assert result.exit_code == 2
    assert "pixelfed is not enabled" in result.output and not fake.exists()


def test_print_command_runs_nothing(demo: Project, fake: Path) -> None:
    result = cli(demo, "run", "--app", "peertube", "--print-command")
    assert result.exit_code == 0 and not fake.exists()
    assert "--tags backup_run" in result.stdout and "playbooks/backup.yml" in result.stdout


# --- list ----------------------------------------------------------------------------------------


def test_list_groups_snapshots_by_run_with_sizes(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"snapshots.json": SNAPSHOTS})
    result = cli(demo, "list", "--app", "mastodon")
    assert result.exit_code == 0, result.output
    argv = recorded(fake)
    assert argv[5:7] == ["--tags", "backup_list"]
    assert extra_vars(argv)["fedictl_backup_list_app"] == "mastodon"
    lines = result.stdout.splitlines()
    assert lines[0] == "mastodon:" and "RUN" in lines[1]
    assert lines[2].split()[:3] == ["20261121T031500Z", "2026-11-21", "03:15:02"]
    assert "22222222    3.0 GiB" in lines[2] and "33333333" in lines[2]
    assert lines[3].split()[-3:] == ["-", "200", "B"], "run 2 has no config snapshot"


def test_list_json_is_the_grouped_runs(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"snapshots.json": SNAPSHOTS})
    runs = json.loads(cli(demo, "list", "--json").stdout)
    assert [r["run"] for r in runs] == ["20261121T031500Z", "20261122T031500Z"]
    assert set(runs[0]["snapshots"]) == {"db", "files", "config"}
    assert runs[0]["time"] == "2026-11-21T03:15:02Z"


def test_list_fails_with_ansibles_code_and_prints_no_table(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "4")
    result = cli(demo, "list")
    assert result.exit_code == 4 and result.stdout == ""


# --- restore -------------------------------------------------------------------------------------


def test_restore_passes_every_choice_and_prints_the_comparison(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report()})
    result = cli(demo, "restore", "--app", "mastodon", "--snapshot", "4444", "--to", "lab1",
                 "--force")  # fmt: skip
    assert result.exit_code == 0, result.output
    argv = recorded(fake)
    assert argv[-1] == "playbooks/restore.yml" and "--tags" not in argv
    assert {k: v for k, v in extra_vars(argv).items() if k != "fedictl_report_dir"} == {
        "fedictl_restore_app": "mastodon",
        "fedictl_restore_snapshot": "4444",
        "fedictl_restore_to": "lab1",
        "fedictl_restore_force": True,
        "fedictl_restore_drill": False,
    }
    assert "public.statuses" in result.stdout and "checksum ok" in result.stdout
    assert "dr-mastodon:files: 42 files checked (sha256, size, mode), all equal" in result.stdout


def test_restore_says_where_it_installed_the_app_first(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports(monkeypatch, **{"restore.json": {**restore_report(), "installed": ["lab1"]}})
    result = cli(demo, "restore", "--app", "mastodon")
    assert result.exit_code == 0, result.output
    assert "installed mastodon first on lab1" in result.stdout
    reports(monkeypatch, **{"restore.json": restore_report()})
    assert "installed" not in cli(demo, "restore", "--app", "mastodon").stdout


def test_restore_to_an_unknown_host_is_refused(demo: Project, fake: Path) -> None:
    result = cli(demo, "restore", "--app", "mastodon", "--to", "nowhere")
    assert result.exit_code == 2 and "--to nowhere: no host of that name" in result.output
    assert not fake.exists()


def test_restore_without_a_result_says_so(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = cli(demo, "restore", "--app", "mastodon")
    assert result.exit_code == 2
    assert "the restore stopped before the end" in result.stdout
    assert extra_vars(recorded(fake))["fedictl_restore_to"] == ""


# --- drill ---------------------------------------------------------------------------------------


class FakeLab:
    def __init__(self) -> None:
        self.up_names: list[str] = []
        self.down_names: list[str] = []

    def up(self, names: list[str]) -> list[Host]:
        self.up_names += names
        return [Host(names[0], "10.213.0.77", "root", 22, "/lab/key")]

    def down(self, names: list[str]) -> list[str]:
        self.down_names += names
        return names


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> FakeLab:
    fake_lab = FakeLab()
    monkeypatch.setattr(backup, "Lab", lambda: fake_lab)
    return fake_lab


def test_drill_boots_a_lab_host_restores_onto_it_and_passes(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, lab: FakeLab
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report(ok=True)})
    result = cli(demo, "drill", "--app", "mastodon")
    assert result.exit_code == 0, result.output
    assert lab.up_names == ["dr-mastodon"] and lab.down_names == ["dr-mastodon"]
    argv = recorded(fake)
    inventories = [argv[i + 1] for i, a in enumerate(argv) if a == "-i"]
    assert inventories[0] == str(demo.inventory() / "hosts.yml") and len(inventories) == 2
    assert extra_vars(argv)["fedictl_restore_drill"] is True
    assert extra_vars(argv)["fedictl_restore_to"] == "dr-mastodon"
    assert "Drill passed on dr-mastodon" in result.stdout


def test_drill_inventory_reaches_the_lab_host() -> None:
    data = backup.drill_inventory(Host("dr-x", "10.213.0.9", "root", 22, "/lab/key"))
    host = data["all"]["children"][backup.DRILL_GROUP]["hosts"]["dr-x"]
    assert (
        host["ansible_host"] == "10.213.0.9" and host["ansible_ssh_private_key_file"] == "/lab/key"
    )
    assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]
    assert yaml.safe_load(yaml.safe_dump(data)) == data


def test_drill_fails_when_a_table_differs_and_still_removes_the_host(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, lab: FakeLab
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report(ok=False)})
    result = cli(demo, "drill", "--app", "mastodon", "--lab-host", "bk-drill2")
    assert result.exit_code == 1
    assert lab.down_names == ["bk-drill2"]
    assert "rows        99 / expected 100" in result.stdout and "DIFFERS" in result.stdout
    assert "Drill FAILED on bk-drill2" in result.output


def test_drill_fails_when_ansible_fails_even_with_a_good_report(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, lab: FakeLab
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report(ok=True)})
    monkeypatch.setenv("FAKE_EXIT", "2")
    assert cli(demo, "drill", "--app", "mastodon", "--json").exit_code == 1


def test_drill_keep_leaves_the_host_and_to_uses_no_lab(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, lab: FakeLab
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report(ok=True)})
    assert cli(demo, "drill", "--app", "mastodon", "--keep").exit_code == 0
    assert lab.down_names == []
    lab.up_names.clear()
    result = cli(demo, "drill", "--app", "mastodon", "--to", "lab1", "--json")
    assert result.exit_code == 0 and lab.up_names == []
    assert json.loads(result.stdout)["target"] == "lab1"
    assert sum(1 for a in recorded(fake) if a == "-i") == 1
    both = cli(demo, "drill", "--app", "mastodon", "--to", "lab1", "--lab-host", "x")
    assert both.exit_code == 2


def test_no_secret_reaches_the_output_or_the_command_line(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, lab: FakeLab
) -> None:
    reports(monkeypatch, **{"restore.json": restore_report(), "run-lab1.json": STATUS_OK,
                            "snapshots.json": SNAPSHOTS})  # fmt: skip
    seen = ""
    for args in (
        ("run",),
        ("list",),
        ("restore", "--app", "mastodon"),
        ("drill", "--app", "mastodon"),
    ):
        result = cli(demo, *args)
        seen += result.output + " ".join(recorded(fake))
    leaked = [v for v in all_secret_values(demo) if v in seen]
    assert not leaked


# --- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**4, "5.0 TiB")],
)
def test_human_bytes(value: Any, text: str) -> None:
    assert backup.human_bytes(value) == text


def test_verdict_needs_a_completed_restore_with_everything_equal() -> None:
    assert backup.verdict(restore_report(ok=True))
    assert not backup.verdict(restore_report(ok=False))
    assert not backup.verdict(None)
    assert not backup.verdict({**restore_report(), "completed": False})
    files_bad = {**restore_report(), "files": {"h:files": {"ok": False}}}
    assert not backup.verdict(files_bad)
    assert backup.verdict({**restore_report(), "database": None})  # an app without a database
