"""What ``fedictl check`` reports: statuses, the checks by name, results, instances, the report."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any


class Status(IntEnum):
    """Nagios/Icinga plugin states; the value is the exit code."""

    OK = 0
    WARN = 1
    CRIT = 2
    UNKNOWN = 3


# Which state wins when results are combined: a known failure over an unknown, an unknown over a
# warning (something could not be verified at all), a warning over OK.
_SEVERITY = {Status.OK: 0, Status.WARN: 1, Status.UNKNOWN: 2, Status.CRIT: 3}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.OK)


# Check names (for --only/--skip) and what each proves; the order is the report's order.
CHECKS: dict[str, str] = {
    "dns": "each domain resolves (or --resolve/--connect-to sends it)",
    "http-redirect": "port 80 answers 301/308 to https:// on the same host",
    "https": "GET / over HTTPS answers without a server error",
    "tls": "the certificate chain verifies and names the domain",
    "tls-expiry": "days until the certificate expires",
    "health": "/health, /api/v1/ping or /api/service/health-check",
    "streaming": "Mastodon's /api/v1/streaming/health",
    "api": "the app's API reports the pinned version",
    "release": "no advisory that a later known patch of the running release's line fixes",
    "nodeinfo": "/.well-known/nodeinfo → NodeInfo 2.x: app and pinned version",
    "webfinger": "acct:ADMIN@DOMAIN resolves to an ActivityPub link",
    "actor": "that link answers with the actor's ActivityPub JSON",
    "units": "SSH: the app's systemd units and nginx are active",
    "disk": "SSH: free space on the app's filesystems",
    "backup": "SSH: age of the app's last successful backup",
    "sidekiq": "SSH: Mastodon's Sidekiq queue:default, retry, dead sizes",
}
HOST_CHECKS = ("units", "disk", "backup", "sidekiq")
GROUPS: dict[str, tuple[str, ...]] = {
    "host": HOST_CHECKS,
    "web": tuple(c for c in CHECKS if c not in HOST_CHECKS),
    "federation": ("nodeinfo", "webfinger", "actor"),
}


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """A number for monitoring (Prometheus name without the ``fedictl_check_`` prefix)."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass
class Result:
    instance: str  # the instance's (served) domain
    app: str
    check: str
    status: Status
    value: str
    hint: str = ""  # what to do; only when not OK
    target: str = ""  # the domain or host looked at, when it is not ``instance``
    metrics: list[Metric] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "app": self.app,
            "check": self.check,
            "target": self.target or self.instance,
            "status": self.status.name,
            "value": self.value,
            "hint": self.hint,
            "seconds": round(self.seconds, 3),
            "metrics": {m.name: m.value for m in self.metrics if not m.labels},
        }


@dataclass(frozen=True)
class Instance:
    app: str
    domain: str  # where the app is served (Mastodon: web_domain, else local_domain)
    account_domain: str  # the domain in handles (Mastodon: local_domain; others: domain)
    version: str  # the pinned release tag, e.g. v4.6.5
    hosts: tuple[str, ...]  # hosts of the app's group
    account: str  # admin username for WebFinger; '' = none to look up
    settings: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.domain, self.account_domain)))

    @property
    def expected_version(self) -> str:
        return self.version.removeprefix("v")


@dataclass
class Report:
    instances: list[Instance]
    results: list[Result]
    started: datetime
    seconds: float
    processes: int = 1  # how many processes ran the web checks

    @property
    def status(self) -> Status:
        return worst(r.status for r in self.results)

    def counts(self) -> dict[str, int]:
        return {s.name: sum(r.status is s for r in self.results) for s in Status}


def internal_error(instance: Instance, check: str, exc: BaseException) -> Result:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    return Result(
        instance.domain,
        instance.app,
        check,
        Status.UNKNOWN,
        f"fedictl failed: {type(exc).__name__}: {exc}{at}",
        "this is a bug in fedictl check: please report it with this line",
    )
