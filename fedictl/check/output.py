"""The report of ``fedictl check`` for people (a table), for scripts (JSON) and for Prometheus."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from fedictl.check.model import Report
from fedictl.errors import UsageError


def table(report: Report) -> list[str]:
    """The report for people: one line per result, then a summary line."""
    rows = [("INSTANCE", "CHECK", "STATUS", "VALUE", "HINT")]
    for r in report.results:
        check = f"{r.check} ({r.target})" if r.target else r.check
        rows.append((r.instance, check, r.status.name, r.value, r.hint))
    widths = [max(len(row[n]) for row in rows) for n in range(3)]
    widths.append(min(60, max(len(row[3]) for row in rows)))
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items() if n)
    lines.append(
        f"{len(report.results)} checks of {len(report.instances)} instance(s) in "
        f"{report.seconds:.1f} s: {counts or 'nothing checked'} → {report.status.name} "
        f"(exit {report.status.value})"
    )
    return lines


def as_json(report: Report) -> dict[str, Any]:
    return {
        "status": report.status.name,
        "exit_code": report.status.value,
        "started": report.started.isoformat(timespec="seconds"),
        "seconds": round(report.seconds, 3),
        "counts": report.counts(),
        "instances": [
            {
                "app": i.app,
                "domain": i.domain,
                "account_domain": i.account_domain,
                "version": i.version,
                "hosts": list(i.hosts),
            }
            for i in report.instances
        ],
        "results": [r.as_dict() for r in report.results],
    }


METRICS: dict[str, str] = {
    "status": "State of one check: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN (Nagios plugin codes).",
    "duration_seconds": "Seconds one check took.",
    "tls_cert_expiry_days": "Days until the certificate served for the domain expires.",
    "unit_active": "1 when the systemd unit is active on the host, else 0.",
    "disk_free_ratio": "Free fraction of the filesystem (available to unprivileged users).",
    "disk_free_bytes": "Free bytes on the filesystem (available to unprivileged users).",
    "backup_age_seconds": "Seconds since the app's last successful backup.",
    "sidekiq_jobs": "Jobs in one of Mastodon's Sidekiq sets: queue:default, retry, dead.",
    "run_status": "Overall state of the last fedictl check run (its exit code).",
    "run_timestamp_seconds": "When the last fedictl check run started (Unix time).",
    "run_duration_seconds": "Seconds the last fedictl check run took.",
}


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def prometheus_text(report: Report) -> str:
    """The report in Prometheus' text format, for node_exporter's textfile collector."""
    samples: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {n: [] for n in METRICS}
    for r in report.results:
        base = (("app", r.app), ("domain", r.instance), ("target", r.target or r.instance))
        samples["status"].append(((*base, ("check", r.check)), float(r.status.value)))
        samples["duration_seconds"].append(((*base, ("check", r.check)), round(r.seconds, 3)))
        for metric in r.metrics:
            samples.setdefault(metric.name, []).append(((*base, *metric.labels), metric.value))
    samples["run_status"].append(((), float(report.status.value)))
    samples["run_timestamp_seconds"].append(((), round(report.started.timestamp(), 3)))
    samples["run_duration_seconds"].append(((), round(report.seconds, 3)))
    lines: list[str] = []
    for name, rows in samples.items():
        if not rows:
            continue
        full = f"fedictl_check_{name}"
        lines += [f"# HELP {full} {METRICS.get(name, name)}", f"# TYPE {full} gauge"]
        seen: set[tuple[tuple[str, str], ...]] = set()
        for labels, value in rows:
            if labels in seen:
                continue
            seen.add(labels)
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
            lines.append(
                f"{full}{{{text}}} {_number(value)}" if text else f"{full} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def check_writable(path: Path) -> None:
    """Refuse a --prometheus file that could not be written, before anything runs."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(
            f"--prometheus {path}: is a directory; fix: name a file, e.g. {path}/fedictl.prom"
        )
    if not parent.is_dir():
        raise UsageError(f"--prometheus {path}: directory {parent} does not exist; fix: create it")
    if not os.access(parent, os.W_OK):
        raise UsageError(
            f"--prometheus {path}: directory {parent} is not writable; fix: name a file in a "
            "directory you can write"
        )


def write_atomically(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file in the same directory, so readers never see half.

    The temporary name starts with a dot and does not end in .prom, so node_exporter's textfile
    collector never reads it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_text(report: Report) -> str:
    return json.dumps(as_json(report), indent=2)
