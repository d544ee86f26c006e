"""``fedictl check``: is each instance healthy, asked the way a Fediverse admin would ask it.

For every enabled app in the inventory (an *instance*: its domains, pinned version and hosts) the
checks a peer server or a visitor depends on run concurrently — DNS, the HTTP→HTTPS redirect,
HTTPS, the certificate and its expiry, the app's health and API endpoints, NodeInfo, WebFinger and
the ActivityPub actor — beside the host-side checks of ``fedictl.check_host`` (units, disk,
backups, queues over SSH). Each finding is a ``Result`` with a Nagios status (OK/WARN/CRIT/UNKNOWN),
a value and, when not OK, a one-line hint.

Every check has its own deadline (``Options.timeout``) and every instance runs in its own thread,
so one slow or unreachable instance delays nobody else; many instances at once are shared out to
one forked process per CPU core. A probe failure is a result with its reason, never an exception.
Imports no click; raises ``UsageError`` for bad input.

One module per job: ``model`` (statuses, checks, results, instances), ``options`` (what runs, and
option values), ``discovery`` (instances from an inventory), ``web`` (one instance's web checks),
``processes`` (running them all at once) and ``output`` (table, JSON, Prometheus).
"""

from __future__ import annotations

from fedictl.check.discovery import instances
from fedictl.check.model import (
    CHECKS,
    GROUPS,
    HOST_CHECKS,
    Instance,
    Metric,
    Report,
    Result,
    Status,
    worst,
)
from fedictl.check.options import (
    Options,
    expand_checks,
    parse_accounts,
    parse_connect_to,
    parse_resolve,
    selected_checks,
)
from fedictl.check.output import (
    METRICS,
    as_json,
    check_writable,
    json_text,
    prometheus_text,
    table,
    write_atomically,
)
from fedictl.check.processes import INSTANCES_PER_PROCESS, SPLIT_AT, HostChecks, run
from fedictl.check.web import HINTS, check_instance

__all__ = [
    "CHECKS",
    "GROUPS",
    "HINTS",
    "HOST_CHECKS",
    "INSTANCES_PER_PROCESS",
    "METRICS",
    "SPLIT_AT",
    "HostChecks",
    "Instance",
    "Metric",
    "Options",
    "Report",
    "Result",
    "Status",
    "as_json",
    "check_instance",
    "check_writable",
    "expand_checks",
    "instances",
    "json_text",
    "parse_accounts",
    "parse_connect_to",
    "parse_resolve",
    "prometheus_text",
    "run",
    "selected_checks",
    "table",
    "worst",
    "write_atomically",
]
