"""Backups of an inventory's apps: run them now, list them, restore them, prove them in a drill.

Each action is a run of ``ansible-playbook`` (``playbooks/backup.yml`` with the tag ``backup_run``
or ``backup_list``, or ``playbooks/restore.yml``) whose output goes to stderr while it runs. The
playbooks hand their results to the controller as JSON files in a temporary report directory
(``-e fedictl_report_dir=...``); this module reads those files, never Ansible's text output.

A drill restores an app's latest snapshots onto a disposable lab host (``fedictl.lab``) or a spare
host of the inventory, with ``fedictl_restore_drill=true``: the restore compares every table's row
count and checksum and every file's sha256 with what the backup recorded, and the drill passes only
when all of them match.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedictl import paths, runner
from fedictl.errors import FedictlError, MissingToolError, UsageError, shown
from fedictl.inventory import Inventory
from fedictl.lab import SSH_OPTIONS, Host, Lab

BACKUP_PLAYBOOK = "playbooks/backup.yml"
RESTORE_PLAYBOOK = "playbooks/restore.yml"
KINDS = ("db", "files", "config")
DRILL_GROUP = "fedictl_drill"


class BackupError(FedictlError):
    """A backup action failed in a way the user can act on."""


@dataclass
class Playbook(runner.Deployment):
    """A Deployment of one of the backup playbooks, with extra vars passed as one JSON ``-e``."""

    path: str = BACKUP_PLAYBOOK
    extra_vars: dict[str, Any] = field(default_factory=dict)
    extra_inventories: list[Path] = field(default_factory=list)

    @property
    def playbook(self) -> str:
        return self.path

    def argv(self) -> list[str]:
        argv = super().argv()
        head, last = argv[:-1], argv[-1]
        for extra in self.extra_inventories:
            head += ["-i", str(extra.resolve())]
        if self.extra_vars:
            head += ["-e", json.dumps(self.extra_vars, sort_keys=True)]
        return [*head, last]


@contextmanager
def report_dir(keep: bool = False) -> Iterator[Path]:
    """A private directory (0700) the playbooks write their JSON results into; removed at the
    end unless ``keep`` (for a command printed to be run later). Its path reaches the playbooks
    as an extra variable, which Ansible would render if it held template syntax."""
    if "{" in tempfile.gettempdir():
        raise UsageError(
            f"TMPDIR {shown(tempfile.gettempdir())} holds '{{', which Ansible would read as a "
            "template; fix: point TMPDIR at a directory without braces"
        )
    if keep:
        yield Path(tempfile.mkdtemp(prefix="fedictl-backup-"))
        return
    with tempfile.TemporaryDirectory(prefix="fedictl-backup-") as tmp:
        os.chmod(tmp, 0o700)
        yield Path(tmp)


SNAPSHOT_RE = re.compile(r"(?:run:)?[A-Za-z0-9]{1,64}")


def check_snapshot(snapshot: str) -> None:
    """A snapshot id (or prefix) or a run id: the only text passed on to Ansible as ``-e``, which
    would render anything else as a template."""
    if snapshot and not SNAPSHOT_RE.fullmatch(snapshot):
        raise UsageError(
            f"--snapshot {snapshot!r}: not a snapshot or run id; fix: give an id "
            "`fedictl backup list` shows (a snapshot id like 4f2a9c1e, or a run id like "
            "20260101T030000Z), or leave it out for the latest"
        )


def check_app(inv: Inventory, app: str | None) -> None:
    if app is not None and app not in inv.enabled_apps():
        raise UsageError(
            f"--app {app}: {app} is not enabled in {inv.path}; fix: pick one of "
            f"{', '.join(sorted(inv.enabled_apps())) or 'the enabled apps (none are)'}"
        )


def run_playbook(playbook: Playbook) -> runner.Result:
    """Run ansible-playbook with its output on stderr (stdout is for fedictl's own results)."""
    if shutil.which("ansible-playbook") is None:
        raise MissingToolError(
            "ansible-playbook not found on PATH; fix: install fedictl's dependencies "
            "(pip install -e .) and activate that environment"
        )
    root = paths.project_root()
    if not (root / playbook.playbook).is_file():
        raise UsageError(f"{root / playbook.playbook} does not exist; fix: check FEDICTL_ROOT")
    with tempfile.TemporaryDirectory(prefix="fedictl-summary-") as tmp:
        summary = Path(tmp) / "summary.json"
        completed = subprocess.run(
            playbook.argv(), cwd=root, env=runner.environment(summary), stdout=2, check=False
        )
        return runner.Result(completed.returncode, runner.read_summary(summary))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- run -----------------------------------------------------------------------------------------


def run_now(inventory: Path, vault: Path, app: str | None, reports: Path) -> Playbook:
    return Playbook(
        inventory=inventory,
        vault_password_file=vault,
        tags="backup_run",
        extra_vars={"fedictl_backup_run_app": app or "", "fedictl_report_dir": str(reports)},
    )


def read_run_reports(reports: Path) -> dict[str, dict[str, Any]]:
    """host -> the status file that host's run left."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(reports.glob("run-*.json")):
        data = _read_json(path)
        if isinstance(data, dict):
            found[path.stem.removeprefix("run-")] = data
    return found


def format_run(statuses: dict[str, dict[str, Any]], app: str | None) -> list[str]:
    lines = []
    for host, status in sorted(statuses.items()):
        for name, entry in sorted((status.get("apps") or {}).items()):
            if app and name != app:
                continue
            snaps = entry.get("last_attempt_snapshots") or {}
            ids = " ".join(f"{k}={str(snaps[k])[:8]}" for k in KINDS if k in snaps)
            if entry.get("last_error"):
                lines.append(f"{host} {name}: FAILED: {entry['last_error']}")
            else:
                lines.append(
                    f"{host} {name}: ok, run {entry.get('last_run')}, {ids}, "
                    f"{human_bytes(entry.get('bytes_added'))} added in "
                    f"{entry.get('duration_seconds', 0):.0f} s"
                )
    return lines or ["No app was backed up (no host holds a database or a declaration)."]


# --- list ----------------------------------------------------------------------------------------


def list_snapshots(inventory: Path, vault: Path, app: str | None, reports: Path) -> Playbook:
    return Playbook(
        inventory=inventory,
        vault_password_file=vault,
        tags="backup_list",
        extra_vars={"fedictl_backup_list_app": app or "", "fedictl_report_dir": str(reports)},
    )


def read_snapshots(reports: Path) -> list[dict[str, Any]]:
    data = _read_json(reports / "snapshots.json")
    if not isinstance(data, list):
        raise BackupError("the playbook returned no snapshot list; see its output above")
    return [s for s in data if isinstance(s, dict)]


def group_runs(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per app and run (the db, files and config snapshots of one backup run)."""
    runs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for snap in snapshots:
        app, run, host = snap.get("app"), snap.get("run"), snap.get("host")
        if not app or not run or snap.get("kind") not in KINDS:
            continue
        entry = runs.setdefault(
            (app, run, host or ""),
            {"app": app, "run": run, "host": host, "time": snap.get("time"), "snapshots": {}},
        )
        entry["snapshots"][snap["kind"]] = {
            k: snap.get(k) for k in ("id", "short_id", "time", "size", "added", "files")
        }
        entry["time"] = min(entry["time"] or "", snap.get("time") or "") or None
    return sorted(runs.values(), key=lambda r: (r["app"], r["time"] or "", r["host"] or ""))


def human_bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover


def format_runs(runs: list[dict[str, Any]]) -> list[str]:
    if not runs:
        return ["No snapshots yet."]
    lines = []
    current = None
    for r in runs:
        if r["app"] != current:
            current = r["app"]
            lines.append(f"{current}:")
            lines.append(
                f"  {'RUN':<17} {'TIME (UTC)':<20} {'HOST':<14} "
                f"{'DB':<19} {'FILES':<19} {'CONFIG':<19} ADDED"
            )
        cells = []
        for kind in KINDS:
            snap = r["snapshots"].get(kind)
            cells.append(f"{snap['short_id']} {human_bytes(snap.get('size')):>10}" if snap else "-")
        added = sum(s.get("added") or 0 for s in r["snapshots"].values())
        lines.append(
            f"  {r['run']:<17} {(r['time'] or '-').replace('T', ' ').rstrip('Z'):<20} "
            f"{r['host'] or '-':<14} {cells[0]:<19} {cells[1]:<19} {cells[2]:<19} "
            f"{human_bytes(added)}"
        )
    return lines


# --- restore and drill ---------------------------------------------------------------------------


@dataclass
class RestoreRequest:
    app: str
    snapshot: str = ""
    to: str = ""
    force: bool = False
    drill: bool = False


def restore(
    inventory: Path,
    vault: Path,
    request: RestoreRequest,
    reports: Path,
    extra_inventories: list[Path] | None = None,
) -> Playbook:
    check_snapshot(request.snapshot)
    return Playbook(
        inventory=inventory,
        vault_password_file=vault,
        path=RESTORE_PLAYBOOK,
        extra_inventories=extra_inventories or [],
        extra_vars={
            "fedictl_restore_app": request.app,
            "fedictl_restore_snapshot": request.snapshot,
            "fedictl_restore_to": request.to,
            "fedictl_restore_force": request.force,
            "fedictl_restore_drill": request.drill,
            "fedictl_report_dir": str(reports),
        },
    )


def check_target(inv: Inventory, to: str) -> None:
    if to and to not in inv.hostvars:
        raise UsageError(
            f"--to {shown(to)}: no host of that name in {inv.path}; fix: name a host of hosts.yml "
            f"({', '.join(sorted(inv.hostvars)) or 'none'})"
        )


def read_restore_report(reports: Path) -> dict[str, Any] | None:
    data = _read_json(reports / "restore.json")
    return data if isinstance(data, dict) else None


def verdict(report: dict[str, Any] | None) -> bool:
    """True when the restore finished and every table and file matched the backup's manifests."""
    if not report or not report.get("completed"):
        return False
    database = report.get("database")
    if database is not None and not database.get("ok"):
        return False
    files = report.get("files") or {}
    return all(isinstance(f, dict) and f.get("ok") for f in files.values())


def format_restore(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return [
            "No result: the restore stopped before the end; see ansible-playbook's output above."
        ]
    plan = report.get("plan") or {}
    lines = [f"{report.get('app')}: run {plan.get('run')} ({plan.get('time')})"]
    for kind, snap in (plan.get("snapshots") or {}).items():
        lines.append(f"  {kind:<7} snapshot {snap.get('short_id')} from {snap.get('host')}")
    installed = report.get("installed") or []
    if installed:
        lines.append(
            f"  installed {report.get('app')} first on {', '.join(installed)} (site.yml, as "
            "`fedictl deploy` would), then replaced its new data with the backup's"
        )
    database = report.get("database")
    if database:
        lines.append(f"  database {database.get('database')} on {report.get('database_host')}:")
        for t in database.get("tables", []):
            mark = "ok" if t.get("ok") else "DIFFERS"
            lines.append(
                f"    {t['table']:<40} rows {t.get('rows')!s:>9} / expected "
                f"{t.get('expected_rows')!s:<9} checksum {mark}"
            )
        bad_seq = database.get("sequences_differing") or []
        lines.append(
            f"    sequences: {database.get('sequences_checked', 0)} checked"
            + (f", DIFFERING: {', '.join(bad_seq)}" if bad_seq else ", all equal")
        )
    for where, result in sorted((report.get("files") or {}).items()):
        mark = "all equal" if result.get("ok") else f"{result.get('mismatch_count')} DIFFER"
        lines.append(
            f"  {where}: {result.get('checked')} files checked (sha256, size, mode), {mark}"
        )
        for m in (result.get("mismatches") or [])[:10]:
            lines.append(f"    {m.get('path')}: {m.get('problem')}")
    for url, status in sorted((report.get("health") or {}).items()):
        lines.append(f"  health {url}: HTTP {status}")
    if not report.get("completed"):
        lines.append("  the restore did not complete; see ansible-playbook's output above")
    return lines


def drill_inventory(host: Host) -> dict[str, Any]:
    """An inventory holding only the drill's lab host (passed as a second -i)."""
    return {
        "all": {
            "children": {
                DRILL_GROUP: {
                    "hosts": {
                        host.name: {
                            "ansible_host": host.address,
                            "ansible_user": host.user,
                            "ansible_port": host.port,
                            "ansible_ssh_private_key_file": host.identity_file,
                            "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        }
    }


def default_lab_name(app: str) -> str:
    return f"dr-{app}"[:12]


@dataclass
class DrillResult:
    exit_code: int
    report: dict[str, Any] | None
    target: str
    ok: bool


def drill(
    inv: Inventory,
    vault: Path,
    app: str,
    *,
    lab_name: str | None = None,
    to: str = "",
    keep: bool = False,
    echo: Callable[[str], None] = lambda _: None,
    lab: Lab | None = None,
) -> DrillResult:
    """Restore the latest snapshots of ``app`` onto a lab host (or ``to``) and compare them."""
    check_app(inv, app)
    check_target(inv, to)
    with report_dir() as reports:
        if to:
            echo(f"drill: restoring {app} onto {to} (an inventory host) ...")
            playbook = restore(inv.path, vault, RestoreRequest(app, to=to, drill=True), reports)
            result = run_playbook(playbook)
            report = read_restore_report(reports)
            return DrillResult(
                result.exit_code, report, to, result.exit_code == 0 and verdict(report)
            )
        the_lab = lab or Lab()
        name = lab_name or default_lab_name(app)
        echo(f"drill: booting lab host {name} ...")
        (host,) = the_lab.up([name])
        try:
            extra = reports / "drill-inventory.yml"
            extra.write_text(yaml.safe_dump(drill_inventory(host), sort_keys=False))
            echo(f"drill: restoring {app} onto {name} ({host.address}) ...")
            request = RestoreRequest(app, to=name, drill=True)
            playbook = restore(inv.path, vault, request, reports, [extra])
            result = run_playbook(playbook)
            report = read_restore_report(reports)
        finally:
            if keep:
                echo(f"drill: lab host {name} kept; `fedictl lab down {name}` removes it")
            else:
                the_lab.down([name])
        return DrillResult(
            result.exit_code, report, name, result.exit_code == 0 and verdict(report)
        )
