"""Host-side checks of ``fedictl check``: systemd units, free disk, backup age, Sidekiq backlog.

One run of ``playbooks/check-host.yml`` (read-only; ansible-playbook as an argv list from the
project root, vault opened with the inventory's password file) collects raw facts from every host
involved; Ansible's JSON stdout callback carries them back, so nothing is read from Ansible's text
output. Python then judges them against the thresholds in ``Options``. The Redis password stays in
the vault and on the host: fedictl never reads it, and the playbook hands it to redis-cli on stdin.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fedictl import apps, paths
from fedictl.check.model import Instance, Metric, Result, Status
from fedictl.check.options import Options
from fedictl.inventory import HOSTS, Inventory

PLAYBOOK = "playbooks/check-host.yml"
REPORT_TASK = "Report the findings to fedictl"
BACKUP_STATUS_FILE = "/var/lib/fedictl/backup/status.json"

# Which units each app runs on the hosts of its group, and the filesystems whose free space matters
# there (df reports the filesystem holding each path), are declared by the app (fedictl/apps/).
# nginx runs on web hosts; on database hosts PostgreSQL's data matters.
WEB_UNITS = ("nginx.service",)
DATABASE_PATHS = ("/", "/var/lib/postgresql")
# Backups run on the app's hosts (files) and on database hosts (dumps), as playbooks/backup.yml
# places them; each host's status file has an entry per app it backs up.
SIDEKIQ_SETS = ("retry", "dead", "queue:default")  # in the order the playbook asks for them


@dataclass
class HostPlan:
    units: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    backup: bool = False
    sidekiq_db: int | None = None

    def as_vars(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "paths": self.paths,
            "backup": self.backup,
            "sidekiq_db": self.sidekiq_db,
        }


def _group(inv: Inventory, name: str) -> set[str]:
    return set(inv.groups.get(name) or [])


def hosts_for(inv: Inventory, instance: Instance, check: str) -> list[str]:
    """The hosts ``check`` looks at for ``instance``."""
    if check == "units":
        candidates = _group(inv, instance.app) | _group(inv, "web")
        return sorted(h for h in candidates if units_for(inv, instance, h))
    if check in ("disk", "backup"):
        return sorted(_group(inv, instance.app) | _group(inv, "database"))
    if check == "sidekiq":
        return sorted(_group(inv, "cache"))[:1]
    raise ValueError(check)


def _settings(instance: Instance) -> dict[str, Any]:
    """The instance's settings, its app's defaults where the inventory sets none."""
    return dataclasses.asdict(apps.get(instance.app).settings()) | instance.settings


def paths_for(inv: Inventory, instance: Instance, host: str) -> list[str]:
    paths: list[str] = []
    declared = apps.get(instance.app).disk_paths
    for group, wanted in ((instance.app, declared), ("database", DATABASE_PATHS)):
        if host in _group(inv, group):
            paths += [p for p in wanted if p not in paths]
    return paths


def units_for(inv: Inventory, instance: Instance, host: str) -> list[str]:
    """The units ``instance`` needs on ``host``: its app's on app hosts, nginx on web hosts."""
    units: list[str] = []
    if host in _group(inv, instance.app):
        settings = _settings(instance)
        units += [unit.format_map(settings) for unit in apps.get(instance.app).units]
    if host in _group(inv, "web"):
        units += WEB_UNITS
    return units


def plan(inv: Inventory, instances: list[Instance], options: Options) -> dict[str, HostPlan]:
    """What to read on each host for the selected checks of these instances."""
    plans: dict[str, HostPlan] = {}

    def add(items: list[str], new: list[str]) -> None:
        items += [item for item in new if item not in items]

    for instance in instances:
        for check in ("units", "disk", "backup", "sidekiq"):
            if not options.wants(check, instance.app):
                continue
            for host in hosts_for(inv, instance, check):
                host_plan = plans.setdefault(host, HostPlan())
                if check == "units":
                    add(host_plan.units, units_for(inv, instance, host))
                elif check == "disk":
                    add(host_plan.paths, paths_for(inv, instance, host))
                elif check == "backup":
                    host_plan.backup = True
                else:
                    host_plan.sidekiq_db = int(_settings(instance)["redis_db"])
    return plans


# --- running the playbook ------------------------------------------------------------------------


@dataclass
class HostReport:
    """What the playbook saw on one host, or why it could not look."""

    facts: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # unreachable / failed: the reason
    unreachable: bool = False
    hint: str = ""  # what to do about the problem, when the default hint does not fit


def _environment(timeout: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CALLBACKS_ENABLED"}
    env.update(
        {
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_TIMEOUT": str(max(1, math.ceil(timeout))),  # SSH connection timeout
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "1",
        }
    )
    return env


def argv(
    inventory_dir: Path, password_file: Path | None, hosts: list[str], vars_file: Path
) -> list[str]:
    command = ["ansible-playbook", "-i", str((inventory_dir / HOSTS).resolve())]
    if password_file is not None:
        command += ["--vault-password-file", str(password_file.resolve())]
    return [*command, "--limit", ",".join(hosts), "-e", f"@{vars_file}", PLAYBOOK]


def collect(
    inventory_dir: Path,
    password_file: Path | None,
    plans: dict[str, HostPlan],
    timeout: float,
) -> dict[str, HostReport]:
    """Run the playbook once for every planned host; one HostReport per host (never raises
    for a host problem: unreachable and failed hosts come back with their reason)."""
    if not plans:
        return {}
    if shutil.which("ansible-playbook") is None:
        return _everywhere(
            plans, "ansible-playbook not found on PATH (install fedictl's dependencies)"
        )
    root = paths.project_root()
    if not (root / PLAYBOOK).is_file():
        problem = f"{root / PLAYBOOK} does not exist"
        return _everywhere(plans, problem, "set FEDICTL_ROOT to a fedictl checkout, or unset it")
    hosts = sorted(plans)
    # The whole run may take a few task timeouts per host (forks run hosts in parallel).
    budget = 30 + 8 * timeout
    with tempfile.TemporaryDirectory(prefix="fedictl-check-") as tmp:
        vars_file = Path(tmp) / "plan.json"
        vars_file.write_text(
            json.dumps(
                {
                    "fedictl_check_plan": {h: p.as_vars() for h, p in plans.items()},
                    "fedictl_check_timeout": max(1, math.ceil(timeout)),
                }
            )
        )
        process = subprocess.Popen(
            argv(inventory_dir, password_file, hosts, vars_file),
            cwd=root,
            env=_environment(timeout),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # so a timeout can stop ansible-playbook and its ssh children
        )
        try:
            stdout, stderr = process.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return _everywhere(plans, f"ansible-playbook did not finish within {budget:g} s")
    return parse_output(stdout, stderr, hosts)


def _everywhere(plans: dict[str, HostPlan], problem: str, hint: str = "") -> dict[str, HostReport]:
    return {h: HostReport(problem=problem, hint=hint) for h in plans}


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


def parse_output(stdout: str, stderr: str, hosts: list[str]) -> dict[str, HostReport]:
    """HostReports from the JSON callback's output of one playbook run."""
    data: Any = None
    if "{" in stdout:  # the JSON document; anything another plugin printed around it is ignored
        try:
            data, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{") :])
        except ValueError:
            data = None
    if not isinstance(data, dict):
        reason = _first_line(stderr) or _first_line(stdout) or "no output"
        return {h: HostReport(problem=f"ansible-playbook failed: {reason}") for h in hosts}
    reports: dict[str, HostReport] = {}
    for play in data.get("plays") or []:
        for task in play.get("tasks") or []:
            name = str((task.get("task") or {}).get("name", ""))
            for host, result in (task.get("hosts") or {}).items():
                report = reports.setdefault(host, HostReport())
                if not isinstance(result, dict) or report.problem:
                    continue
                if result.get("unreachable"):
                    report.unreachable = True
                    report.problem = (
                        f"unreachable over SSH: {_first_line(str(result.get('msg', '')))}"
                    )
                elif result.get("failed"):
                    message = _first_line(str(result.get("msg", ""))) or "failed"
                    report.problem = f"task {name!r} failed: {message}"
                elif name == REPORT_TASK and isinstance(result.get("msg"), dict):
                    report.facts = result["msg"]
    for host in hosts:
        report = reports.setdefault(host, HostReport())
        if not report.problem and not report.facts:
            reason = _first_line(stderr) or "the host was not in the play"
            report.problem = f"no report from ansible-playbook ({reason})"
    return reports


# --- judging the facts ---------------------------------------------------------------------------


def _result(
    instance: Instance, check: str, host: str, status: Status, value: str, hint: str = ""
) -> Result:
    return Result(
        instance.domain,
        instance.app,
        check,
        status,
        value,
        hint if status is not Status.OK else "",
        host,
    )


def _host_problem(instance: Instance, check: str, host: str, report: HostReport) -> Result:
    if report.unreachable:
        hint = f"check SSH to {host} (fedictl validate; ssh to its ansible_host), or --skip host"
        return _result(instance, check, host, Status.CRIT, report.problem, hint)
    hint = report.hint or f"run `ansible-playbook {PLAYBOOK}` on {host} to see Ansible's own output"
    return _result(instance, check, host, Status.UNKNOWN, report.problem, hint)


def parse_units(stdout: str) -> list[dict[str, str]]:
    """``systemctl show`` output: one property mapping per unit, in the order asked."""
    blocks: list[dict[str, str]] = []
    for block in stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props:
            blocks.append(props)
    return blocks


def unit_states(facts: Any, asked: list[str]) -> dict[str, dict[str, str]] | str:
    """unit -> its properties, for the units the playbook asked about; or why they are unknown."""
    if not isinstance(facts, dict):
        return "the units were not read"
    blocks = parse_units(str(facts.get("stdout", "")))
    if len(blocks) != len(asked):
        reason = _first_line(str(facts.get("stderr", ""))) or "unexpected output"
        return f"systemctl show failed: {reason}"
    return dict(zip(asked, blocks, strict=True))


def judge_units(
    instance: Instance, host: str, units: list[str], states: dict[str, dict[str, str]] | str
) -> Result:
    if isinstance(states, str):
        hint = f"check that {host} runs systemd (`systemctl is-system-running` there)"
        return _result(instance, "units", host, Status.UNKNOWN, states, hint)
    bad: list[tuple[Status, str, str]] = []
    metrics: list[Metric] = []
    for unit in units:
        props = states.get(unit, {})
        active = props.get("ActiveState", "")
        metrics.append(Metric("unit_active", float(active == "active"), (("unit", unit),)))
        if props.get("LoadState") == "not-found":
            bad.append((Status.CRIT, unit, "not installed"))
        elif active in ("activating", "reloading", "deactivating"):
            bad.append((Status.WARN, unit, f"{active} ({props.get('SubState', '')})"))
        elif active != "active":
            bad.append((Status.CRIT, unit, f"{active or 'unknown'} ({props.get('SubState', '')})"))
    if not bad:
        names = ", ".join(u.removesuffix(".service") for u in units)
        result = _result(instance, "units", host, Status.OK, f"active: {names}")
    else:
        status = Status.CRIT if any(s is Status.CRIT for s, _, _ in bad) else Status.WARN
        value = "; ".join(f"{u.removesuffix('.service')} {state}" for _, u, state in bad)
        first = bad[0][1]
        if any(state == "not installed" for _, _, state in bad):
            hint = f"run `fedictl deploy --app {instance.app}` to install and start the units"
        else:
            hint = f"on {host}: `journalctl -u {first} -n 50`, then `systemctl restart {first}`"
        result = _result(instance, "units", host, status, value, hint)
    result.metrics = metrics
    return result


def judge_disk(instance: Instance, host: str, facts: Any, options: Options) -> Result:
    if not isinstance(facts, dict):
        return _result(instance, "disk", host, Status.UNKNOWN, "disk space was not read")
    mounts: dict[str, tuple[int, int]] = {}
    for line in str(facts.get("stdout", "")).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[-2].isdigit() and parts[-1].isdigit():
            mounts.setdefault(" ".join(parts[:-2]), (int(parts[-2]), int(parts[-1])))
    if not mounts:
        reason = _first_line(str(facts.get("stderr", ""))) or "no df output"
        return _result(instance, "disk", host, Status.UNKNOWN, f"df failed: {reason}")
    worst_status, parts_text, metrics = Status.OK, [], []
    tightest = ""
    for mount, (size, avail) in sorted(mounts.items()):
        percent = 100.0 * avail / size if size else 0.0
        status = (
            Status.CRIT
            if percent < options.disk_crit_percent
            else Status.WARN
            if percent < options.disk_warn_percent
            else Status.OK
        )
        if status > worst_status and status is not Status.UNKNOWN:
            worst_status, tightest = status, mount
        parts_text.append(f"{mount} {percent:.0f}% free ({_size(avail)})")
        labels = (("mount", mount),)
        metrics += [
            Metric("disk_free_ratio", round(avail / size, 4) if size else 0.0, labels),
            Metric("disk_free_bytes", float(avail), labels),
        ]
    hint = f"free space on {host}:{tightest} (old releases, cached media, logs) or grow the disk"
    result = _result(instance, "disk", host, worst_status, ", ".join(parts_text), hint)
    result.metrics = metrics
    return result


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def judge_backup(
    instance: Instance, host: str, facts: Any, options: Options, now: datetime | None = None
) -> Result:
    def out(status: Status, value: str, hint: str = "") -> Result:
        return _result(instance, "backup", host, status, value, hint)

    run_hint = (
        f"run a backup of {instance.app} now and check the backup timer on {host} "
        "(`systemctl list-timers`)"
    )
    if not isinstance(facts, dict):
        return out(Status.UNKNOWN, "the backup status was not read")
    path = str(facts.get("path") or BACKUP_STATUS_FILE)
    if not facts.get("exists"):
        return out(Status.WARN, f"no backup has run yet ({path} does not exist)", run_hint)
    try:
        raw = base64.b64decode(str(facts.get("content") or ""), validate=True)
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        reason = _first_line(str(facts.get("msg", ""))) or "not JSON"
        return out(Status.UNKNOWN, f"{path} cannot be read ({reason})", f"inspect {path} on {host}")
    apps = data.get("apps") if isinstance(data, dict) else None
    entry = apps.get(instance.app) if isinstance(apps, dict) else None
    if not isinstance(entry, dict):
        return out(Status.WARN, f"no backup of {instance.app} has run yet ({path})", run_hint)
    error = entry.get("last_error")
    error_text = f"; last run failed: {_first_line(str(error))}" if error else ""
    last = entry.get("last_success")
    when = _parse_time(last) if isinstance(last, str) else None
    if when is None:
        status = Status.CRIT if error else Status.WARN
        value = f"no successful backup of {instance.app} yet{error_text}"
        return out(status, value, run_hint)
    hours = ((now or datetime.now(UTC)) - when).total_seconds() / 3600
    status = (
        Status.CRIT
        if hours > options.backup_crit_hours
        else Status.WARN
        if hours > options.backup_warn_hours
        else Status.OK
    )
    if error and status is Status.OK:
        status = Status.WARN
    value = f"last success {hours:.1f} h ago ({when.strftime('%Y-%m-%d %H:%M UTC')}){error_text}"
    result = out(
        status, value, run_hint if not error else f"fix the backup error on {host}, then {run_hint}"
    )
    result.metrics = [Metric("backup_age_seconds", round(hours * 3600, 1))]
    return result


def judge_sidekiq(instance: Instance, host: str, facts: Any, options: Options) -> Result:
    def out(status: Status, value: str, hint: str = "") -> Result:
        return _result(instance, "sidekiq", host, status, value, hint)

    if not isinstance(facts, dict):
        return out(Status.UNKNOWN, "Redis was not asked")
    lines = [str(line).strip() for line in facts.get("stdout_lines") or []]
    if lines and lines[0] == "OK":  # the reply to AUTH
        lines = lines[1:]
    if len(lines) < len(SIDEKIQ_SETS) or not all(n.isdigit() for n in lines[:3]):
        reply = (
            next((line for line in lines if not line.isdigit()), "")
            or _first_line(str(facts.get("stderr") or ""))
            or _first_line(str(facts.get("msg") or ""))
            or "no reply"
        )
        if not lines and not facts.get("stderr") and facts.get("rc") not in (0, None):
            # redis-cli writes its own errors; silence with a failure means it never started
            value = f"redis-cli could not be run on {host} ({reply})"
            return out(Status.UNKNOWN, value, f"install redis-tools on {host}")
        if "could not connect" in reply.lower() or "refused" in reply.lower():
            hint = f"Redis is not answering on {host}: `systemctl status redis-server` there"
            return out(Status.CRIT, f"Redis: {reply}", hint)
        hint = "check that the vault's vault_redis_password is Redis' requirepass"
        return out(Status.UNKNOWN, f"Redis did not answer the queries: {reply}", hint)
    counts = dict(zip(SIDEKIQ_SETS, (int(n) for n in lines[:3]), strict=True))
    backlog = max(counts["queue:default"], counts["retry"])
    status = (
        Status.CRIT
        if backlog >= options.queue_crit
        else Status.WARN
        if backlog >= options.queue_warn
        else Status.OK
    )
    value = ", ".join(f"{name} {count}" for name, count in counts.items())
    hint = (
        "Sidekiq is falling behind: check mastodon-sidekiq (`journalctl -u mastodon-sidekiq`), "
        "the retry set in /sidekiq, and the Sidekiq thread count"
    )
    result = out(status, value, hint)
    result.metrics = [Metric("sidekiq_jobs", float(n), (("set", s),)) for s, n in counts.items()]
    return result


def judge(
    inv: Inventory,
    instances: list[Instance],
    options: Options,
    plans: dict[str, HostPlan],
    reports: dict[str, HostReport],
) -> list[Result]:
    """Results of the host checks of each instance, from the reports of its hosts."""
    results: list[Result] = []
    for instance in instances:
        checks: list[tuple[str, str]] = []  # (check, host) in report order
        for check in ("units", "disk", "backup", "sidekiq"):
            if not options.wants(check, instance.app):
                continue
            hosts = hosts_for(inv, instance, check)
            checks += [(check, h) for h in hosts]
            if not hosts:
                group = "cache" if check == "sidekiq" else instance.app
                value = f"no host in group {group} to look at"
                results.append(_result(instance, check, "", Status.UNKNOWN, value))
        for check, host in checks:
            report = reports.get(host) or HostReport(problem="the host was not asked")
            if report.problem:
                results.append(_host_problem(instance, check, host, report))
                continue
            facts = report.facts.get(check)
            if check == "units":
                asked = plans[host].units if host in plans else []
                states = unit_states(facts, asked)
                results.append(judge_units(instance, host, units_for(inv, instance, host), states))
            elif check == "disk":
                results.append(judge_disk(instance, host, facts, options))
            elif check == "backup":
                results.append(judge_backup(instance, host, facts, options))
            else:
                results.append(judge_sidekiq(instance, host, facts, options))
    return results


def run(
    inv: Inventory, instances: list[Instance], options: Options, password_file: Path | None
) -> list[Result]:
    """Plan, collect over SSH, judge: the host-side results of every selected check."""
    plans = plan(inv, instances, options)
    reports = collect(inv.path, password_file, plans, options.timeout)
    return judge(inv, instances, options, plans, reports)
