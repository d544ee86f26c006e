"""``fedictl check``: is each instance healthy, asked the way a Fediverse admin would ask it.

For every enabled app in the inventory (an *instance*: its domains, pinned version and hosts) this
module runs, concurrently, the checks a peer server or a visitor depends on — DNS, the HTTP→HTTPS
redirect, HTTPS, the certificate and its expiry, the app's health and API endpoints, NodeInfo,
WebFinger and the ActivityPub actor — and merges in the host-side checks of
``fedictl.check_host`` (units, disk, backups, queues over SSH). Each finding is a ``Result`` with a
Nagios status (OK/WARN/CRIT/UNKNOWN), a value and, when not OK, a one-line hint.

Every check has its own deadline (``Options.timeout``) and every instance runs in its own thread,
so one slow or unreachable instance delays nobody else. Many instances at once are shared out to
one forked process per CPU core, because the checks' Python work (TLS, HTTP/2 framing) is what
limits a large run. A probe failure is a result with its reason, never an exception. Imports no
click; raises ``UsageError`` for bad input.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import ssl
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from fedictl.check_http import (
    Deadline,
    Network,
    Pool,
    ProbeError,
    RedirectedAway,
    Response,
    TlsProbe,
    get,
    get_following,
    probe_tls,
    reading_context,
    stop_watchdog,
    verifying_context,
)
from fedictl.errors import UsageError
from fedictl.inventory import Inventory
from fedictl.model import APPS

_T = TypeVar("_T")


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
# Checks that only one app has.
APP_ONLY = {"streaming": "mastodon", "sidekiq": "mastodon"}


def expand_checks(names: Iterable[str], option: str) -> set[str]:
    """Check names from --only/--skip values (comma lists and group names allowed)."""
    chosen: set[str] = set()
    for value in names:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if name in CHECKS:
                chosen.add(name)
            elif name in GROUPS:
                chosen.update(GROUPS[name])
            else:
                raise UsageError(
                    f"{option} {name}: no such check; use one of {', '.join(CHECKS)} "
                    f"or a group ({', '.join(GROUPS)})"
                )
    return chosen


def selected_checks(only: Iterable[str], skip: Iterable[str]) -> frozenset[str]:
    chosen = expand_checks(only, "--only") or set(CHECKS)
    return frozenset(chosen - expand_checks(skip, "--skip"))


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


# --- instances ---------------------------------------------------------------------------------

# Software name each app reports in NodeInfo.
SOFTWARE = {"mastodon": "mastodon", "peertube": "peertube", "pixelfed": "pixelfed"}
# The admin account WebFinger looks up: the fedictl_apps.<app> key that names it, and the default.
# Mastodon: the owner account the role creates (owner_username, default admin, as
# playbooks/vars/mastodon.yml maps it). PeerTube always creates ``root``. Pixelfed: upstream's
# documented admin username, until its role names one. ``--account APP=USER`` overrides.
ACCOUNTS: dict[str, tuple[str, str]] = {
    "mastodon": ("owner_username", "admin"),
    "peertube": ("", "root"),
    "pixelfed": ("", "admin"),
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


def _app_vars(inv: Inventory, app: str) -> dict[str, Any]:
    """The variables the app's hosts see (host_vars may override group_vars/all)."""
    hosts = inv.groups.get(app) or []
    return inv.hostvars.get(hosts[0], {}) if hosts else inv.all_vars


def instances(
    inv: Inventory,
    apps: Sequence[str] = (),
    names: Sequence[str] = (),
    accounts: dict[str, str] | None = None,
) -> list[Instance]:
    """The enabled apps of a valid inventory as instances, filtered by --app and --instance."""
    found: list[Instance] = []
    for app in APPS:
        variables = _app_vars(inv, app)
        settings = (variables.get("fedictl_apps") or {}).get(app)
        if not isinstance(settings, dict) or settings.get("enabled") is not True:
            continue
        if app == "mastodon":
            account_domain = str(settings.get("local_domain") or "")
            domain = str(settings.get("web_domain") or "") or account_domain
        else:
            domain = account_domain = str(settings.get("domain") or "")
        key, default = ACCOUNTS[app]
        account = str(settings.get(key) or default) if key else default
        if accounts and app in accounts:
            account = accounts[app]
        found.append(
            Instance(
                app=app,
                domain=domain.lower(),
                account_domain=account_domain.lower(),
                version=str(settings.get("version") or ""),
                hosts=tuple(inv.groups.get(app) or ()),
                account=account,
                settings=dict(settings),
            )
        )
    enabled = [i.app for i in found]
    for app in apps:
        if app not in enabled:
            raise UsageError(
                f"--app {app}: {app} is not enabled in {inv.path}; enabled: "
                f"{', '.join(enabled) or 'none'}"
            )
    known = {d for i in found for d in i.domains}
    for name in names:
        if name.lower() not in known:
            raise UsageError(
                f"--instance {name}: no enabled instance has this domain; known: "
                f"{', '.join(sorted(known)) or 'none'}"
            )
    chosen = [
        i
        for i in found
        if (not apps or i.app in apps)
        and (not names or set(i.domains) & {n.lower() for n in names})
    ]
    if not chosen:
        raise UsageError(f"{inv.path}: no app is enabled; nothing to check")
    return chosen


# --- options -----------------------------------------------------------------------------------


@dataclass
class Options:
    checks: frozenset[str] = frozenset(CHECKS)
    timeout: float = 10.0  # seconds, per check
    ca_file: Path | None = None
    network: Network = field(default_factory=Network)
    tls_warn_days: float = 21
    tls_crit_days: float = 7
    disk_warn_percent: float = 15  # free space below this: WARN
    disk_crit_percent: float = 5
    backup_warn_hours: float = 26
    backup_crit_hours: float = 50
    queue_warn: int = 1000  # Sidekiq queue:default length or retry set size
    queue_crit: int = 10000

    def check_thresholds(self) -> None:
        pairs = (
            ("--tls-warn-days", self.tls_warn_days, "--tls-crit-days", self.tls_crit_days),
            ("--disk-warn", self.disk_warn_percent, "--disk-crit", self.disk_crit_percent),
            ("--queue-crit", self.queue_crit, "--queue-warn", self.queue_warn),
            ("--backup-crit", self.backup_crit_hours, "--backup-warn", self.backup_warn_hours),
        )
        for high_name, high, low_name, low in pairs:
            if high < low:
                raise UsageError(
                    f"{high_name} {high:g} is below {low_name} {low:g}; fix: swap them"
                )
        if not 0 < self.timeout <= 300:
            raise UsageError(f"--timeout {self.timeout:g}: use 0 < seconds <= 300")

    def wants(self, check: str, app: str) -> bool:
        return check in self.checks and APP_ONLY.get(check, app) == app

    @functools.cached_property
    def tls_context(self) -> ssl.SSLContext:
        """One verifying context for every probe (``run`` makes it before any thread starts)."""
        return verifying_context(self.ca_file)


# --- web checks of one instance ------------------------------------------------------------------

HINTS = {
    "dns": "add an A/AAAA record for {target} pointing at the web host, or fix this machine's "
    "resolver (--resolve DOMAIN:ADDR to test before DNS exists)",
    "http-redirect": "port 80 must answer 301 to https://{target}/: run `fedictl deploy` to "
    "restore nginx's port-80 site (ACME renewals use port 80 too)",
    "https-down": "nginx on the web host does not answer HTTPS: `systemctl status nginx` there, "
    "and check ports 80/443 are open",
    "https-error": "nginx answers but the app behind it does not: see --only units and "
    "`journalctl -u` the app's units on its host",
    "tls-name": "the certificate does not name {target}: add it to the site's domains and run "
    "`fedictl deploy` to get a new certificate",
    "tls-expired": "the certificate expired: run `certbot renew` on the web host and check "
    "certbot.timer",
    "tls-chain": "the chain does not lead to a trusted CA: serve fullchain.pem, or pass --ca-file "
    "for a private CA",
    "tls-expiry": "certbot renews 30 days before expiry: check `certbot renew --dry-run` and "
    "certbot.timer on the web host",
    "endpoint": "the app is not healthy: check its units (--only units) and its log "
    "(`journalctl -u UNIT` on the app host)",
    "redirected": "the instance sends this request to another host: check the nginx site and "
    "the app's domain settings",
    "version": "the server does not run the pinned version: run `fedictl deploy --app {app}` "
    "(or fix fedictl_apps.{app}.version)",
    "wrong-app": "another site answers on this domain: check the nginx site for {target}",
    "webfinger-404": "no account {account} on {target}: create it, or pass --account "
    "{app}=USER to look up another",
    "federation": "peers cannot follow accounts here: check the app's federation endpoints "
    "and that nginx passes /.well-known/ to the app",
    "unreachable": "fix the failure of the {prerequisite} check for {target} first",
}

_NODEINFO_REL = "http://nodeinfo.diaspora.software/ns/schema/"
_ACTIVITY_TYPES = ("application/activity+json", "application/ld+json")
_ACTOR_TYPES = ("Person", "Service", "Application", "Group", "Organization")
_JSON_TYPES = ("application/json", "application/jrd+json", *_ACTIVITY_TYPES)


@dataclass
class _Reach:
    """Whether a domain was reached; if not, why and which check found it."""

    ok: bool
    reason: str = ""
    check: str = ""


def _sample(text: str, limit: int = 40) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProbeError(f"{what}: a JSON {type(value).__name__}, not an object")
    return value


def _same_version(found: object, expected: str) -> bool:
    """The running version equals the pin (build metadata after '+' is ignored)."""
    return isinstance(found, str) and bool(expected) and found.split("+", 1)[0] == expected


def _stamp(results: list[Result], started: float) -> list[Result]:
    for result in results:
        result.seconds = time.monotonic() - started
    return results


def _internal_error(instance: Instance, check: str, exc: BaseException) -> Result:
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


def _done(value: _T) -> Future[_T]:
    """A future that already holds ``value`` (a stage's step run in the calling thread)."""
    future: Future[_T] = Future()
    future.set_result(value)
    return future


class _WebChecks:
    """The network checks of one instance, in three stages: names, then TLS, then HTTP.

    A stage runs its checks in parallel; a domain that fails a stage (no address, no TLS
    handshake) is not probed further, and the checks that needed it are CRIT with that reason.
    """

    def __init__(self, instance: Instance, options: Options, pool: ThreadPoolExecutor) -> None:
        self.i = instance
        self.o = options
        self.pool = pool
        self.verify = options.tls_context
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.own_hosts = frozenset(instance.domains)
        self.connections = Pool()

    def wants(self, check: str) -> bool:
        return self.o.wants(check, self.i.app)

    def result(
        self,
        check: str,
        status: Status,
        value: str,
        hint: str = "",
        target: str = "",
        **extra: str,
    ) -> Result:
        text = ""
        if status is not Status.OK and hint:
            text = HINTS[hint].format(
                target=target or self.i.domain, app=self.i.app, account=self.i.account, **extra
            )
        shown = "" if target in ("", self.i.domain) else target
        return Result(self.i.domain, self.i.app, check, status, value, text, shown)

    def deadline(self) -> Deadline:
        return Deadline(self.o.timeout)

    # stages -----------------------------------------------------------------------------------

    def run(self) -> list[Result]:
        try:
            return self.stages()
        finally:
            self.connections.close()

    def stages(self) -> list[Result]:
        out: list[Result] = []
        domains = self.i.domains
        # Each stage runs one step in this thread (the served domain's; federation, the longest
        # chain, last), the others in the pool beside it.
        lookups = {d: self.pool.submit(self.dns, d) for d in domains[1:]}
        lookups[domains[0]] = _done(self.dns(domains[0]))
        resolved: dict[str, _Reach] = {}
        for domain in domains:
            result, resolved[domain] = lookups[domain].result()
            if self.wants("dns"):
                out.append(result)

        jobs: list[Future[list[Result]]] = []
        if self.wants("http-redirect"):
            jobs.append(self.submit("http-redirect", resolved[self.i.domain], self.redirect))
        reachable = [d for d in domains if resolved[d].ok]
        handshakes = {d: self.pool.submit(self.tls, d) for d in reachable[1:]}
        if reachable:
            handshakes[reachable[0]] = _done(self.tls(reachable[0]))
        reached: dict[str, _Reach] = {}
        for domain in domains:
            if domain in handshakes:
                results, reached[domain] = handshakes[domain].result()
                out += results
            else:
                reached[domain] = resolved[domain]
                out += [
                    self.unreached(check, resolved[domain], domain)
                    for check in ("tls", "tls-expiry")
                    if self.wants(check)
                ]

        served = reached[self.i.domain]
        for check, func in (
            ("https", self.https),
            ("health", self.health),
            ("streaming", self.streaming),
            ("api", self.api),
            ("nodeinfo", self.nodeinfo),
        ):
            if self.wants(check):
                jobs.append(self.submit(check, served, func))
        if self.wants("webfinger") or self.wants("actor"):
            account_domain = reached[self.i.account_domain]
            jobs.append(_done(self.guarded("webfinger", self.federation, account_domain)))
        for job in jobs:
            out += job.result()
        return out

    def guarded(
        self, check: str, func: Callable[[_Reach], list[Result]], reach: _Reach
    ) -> list[Result]:
        try:
            return func(reach)
        except Exception as exc:  # a bug must not cost the other checks their report
            return [_internal_error(self.i, check, exc)]

    def submit(
        self, check: str, reach: _Reach, func: Callable[[], list[Result]]
    ) -> Future[list[Result]]:
        def job(reach: _Reach) -> list[Result]:
            if not reach.ok:
                return [self.unreached(check, reach, self.i.domain)]
            return self.timed(check, func)

        return self.pool.submit(self.guarded, check, job, reach)

    def timed(self, check: str, func: Callable[[], list[Result]]) -> list[Result]:
        started = time.monotonic()
        try:
            results = func()
        except RedirectedAway as exc:
            results = [self.result(check, Status.CRIT, str(exc), "redirected")]
        except ProbeError as exc:
            hint = {"http-redirect": "http-redirect", "https": "https-down"}.get(check, "endpoint")
            if check in GROUPS["federation"]:
                hint = "federation"
            results = [self.result(check, Status.CRIT, str(exc), hint)]
        except Exception as exc:  # a bug must not cost the other checks their report
            results = [_internal_error(self.i, check, exc)]
        return _stamp(results, started)

    def unreached(self, check: str, reach: _Reach, domain: str) -> Result:
        return self.result(
            check,
            Status.CRIT,
            f"unreachable: {reach.reason}",
            "unreachable",
            domain,
            prerequisite=reach.check,
        )

    def get(self, path: str, accept: str = "*/*", domain: str = "") -> Response:
        """GET https://DOMAIN/PATH, following redirects within the instance's own domains."""
        domain = domain or self.i.domain
        return get_following(
            self.o.network,
            f"https://{domain}{path}",
            self.deadline(),
            self.contexts.get(domain, self.verify),
            accept,
            self.own_hosts,
            pool=self.connections,
        )

    # names and certificates -------------------------------------------------------------------

    def dns(self, domain: str) -> tuple[Result, _Reach]:
        started = time.monotonic()
        how = self.o.network.overridden(domain)
        try:
            if how == "--connect-to":
                value = "not looked up (--connect-to)"
            else:
                addresses = self.o.network.lookup(domain, self.deadline())
                value = ", ".join(addresses[:4]) + (" …" if len(addresses) > 4 else "")
                value += f" ({how})" if how else ""
            result, reach = self.result("dns", Status.OK, value, target=domain), _Reach(True)
        except ProbeError as exc:
            result = self.result("dns", Status.CRIT, str(exc), "dns", domain)
            reach = _Reach(False, f"{domain} does not resolve", "dns")
        return _stamp([result], started)[0], reach

    def tls(self, domain: str) -> tuple[list[Result], _Reach]:
        started = time.monotonic()
        try:
            probe = probe_tls(
                self.o.network, domain, 443, self.verify, self.deadline(), self.connections
            )
        except ProbeError as exc:
            failed = [
                self.result(check, Status.CRIT, str(exc), "https-down", domain)
                for check in ("tls", "tls-expiry")
                if self.wants(check)
            ]
            return _stamp(failed, started), _Reach(False, str(exc), "tls")
        self.contexts[domain] = reading_context() if probe.problem else self.verify
        results = []
        if self.wants("tls"):
            results.append(self.verdict(domain, probe))
        if self.wants("tls-expiry"):
            results.append(self.expiry(domain, probe))
        return _stamp(results, started), _Reach(True)

    def verdict(self, domain: str, probe: TlsProbe) -> Result:
        cert = probe.certificate
        if not probe.problem:
            value = f"valid for {domain}, issued by {cert.issuer}"
            return self.result("tls", Status.OK, value, target=domain)
        hint = {10: "tls-expired", 62: "tls-name"}.get(probe.code, "tls-chain")
        names = ", ".join(cert.names[:4]) or cert.subject
        value = f"{probe.problem} (certificate for {names})"
        return self.result("tls", Status.CRIT, value, hint, domain)

    def expiry(self, domain: str, probe: TlsProbe) -> Result:
        not_after = probe.certificate.not_after
        days = (not_after - datetime.now(UTC)).total_seconds() / 86400
        when = not_after.strftime("%Y-%m-%d %H:%M UTC")
        if days < 0:
            status, value = Status.CRIT, f"expired {math.floor(-days)} day(s) ago ({when})"
        else:
            value = f"{math.floor(days)} day(s) left (until {when})"
            if days < self.o.tls_crit_days:
                status = Status.CRIT
            elif days < self.o.tls_warn_days:
                status = Status.WARN
            else:
                status = Status.OK
        result = self.result("tls-expiry", status, value, "tls-expiry", domain)
        result.metrics.append(Metric("tls_cert_expiry_days", round(days, 3)))
        return result

    # HTTP ---------------------------------------------------------------------------------------

    def redirect(self) -> list[Result]:
        domain = self.i.domain
        response = get(self.o.network, f"http://{domain}/", self.deadline(), None)
        location = response.headers.get("location", "")
        parts = urlsplit(location)
        same = (
            parts.scheme == "https"
            and (parts.hostname or "").lower() == domain
            and parts.port in (None, 443)
        )
        status = response.status
        if status in (301, 308) and same:
            return [self.result("http-redirect", Status.OK, f"{status} → {location}")]
        if status in (302, 303, 307) and same:
            value = f"temporary {status} → {location} (want 301 or 308)"
            return [self.result("http-redirect", Status.WARN, value, "http-redirect")]
        if status in (301, 302, 303, 307, 308):
            value = f"{status} → {location or '(no Location)'}, not https://{domain}/"
            return [self.result("http-redirect", Status.CRIT, value, "http-redirect")]
        value = f"answers {status} over plain HTTP instead of redirecting"
        return [self.result("http-redirect", Status.WARN, value, "http-redirect")]

    def https(self) -> list[Result]:
        domain = self.i.domain
        response = get(
            self.o.network,
            f"https://{domain}/",
            self.deadline(),
            self.contexts.get(domain, self.verify),
            pool=self.connections,
        )
        value = f"{response.status} in {response.seconds:.2f} s"
        if response.status >= 500:
            return [self.result("https", Status.CRIT, value, "https-error")]
        if response.status >= 400:
            return [self.result("https", Status.WARN, value, "https-error")]
        return [self.result("https", Status.OK, value)]

    def text_endpoint(self, check: str, path: str, expected: str) -> list[Result]:
        response = self.get(path)
        body = response.text().strip()
        if response.status != 200:
            value = f"{path} answered {response.status} {_sample(body)}"
            return [self.result(check, Status.CRIT, value, "endpoint")]
        if body != expected:
            value = f"{path} answered {_sample(body)} instead of {expected!r}"
            return [self.result(check, Status.CRIT, value, "endpoint")]
        value = f"{path}: {expected} in {response.seconds:.2f} s"
        return [self.result(check, Status.OK, value)]

    def health(self) -> list[Result]:
        path, expected = {
            "mastodon": ("/health", "OK"),
            "peertube": ("/api/v1/ping", "pong"),
            "pixelfed": ("/api/service/health-check", "OK"),
        }[self.i.app]
        return self.text_endpoint("health", path, expected)

    def streaming(self) -> list[Result]:
        return self.text_endpoint("streaming", "/api/v1/streaming/health", "OK")

    def json(self, path: str, accept: str = "application/json", domain: str = "") -> dict[str, Any]:
        """The JSON object at ``path``; ProbeError when the answer is not one."""
        response = self.get(path, accept, domain)
        if response.status != 200:
            raise ProbeError(f"{path} answered {response.status} {_sample(response.text())}")
        if response.media_type not in _JSON_TYPES:
            kind = response.media_type or "no content type"
            raise ProbeError(f"{path} answered {kind}, not JSON")
        return _mapping(response.json(), path)

    def version(self, check: str, where: str, found: object) -> Result:
        shown = str(found) if found not in (None, "") else "no version"
        if _same_version(found, self.i.expected_version):
            return self.result(check, Status.OK, f"{where}: version {shown}")
        value = f"{where}: version {shown}, but the inventory pins {self.i.version}"
        return self.result(check, Status.WARN, value, "version")

    def api(self) -> list[Result]:
        if self.i.app == "mastodon":
            data = self.json("/api/v2/instance")
            domain = str(data.get("domain") or "")
            if domain.lower() != self.i.account_domain:
                value = (
                    f"/api/v2/instance is for {domain or 'no domain'}, not {self.i.account_domain}"
                )
                return [self.result("api", Status.CRIT, value, "wrong-app")]
            return [self.version("api", "/api/v2/instance", data.get("version"))]
        if self.i.app == "peertube":
            data = self.json("/api/v1/config")
            return [self.version("api", "/api/v1/config", data.get("serverVersion"))]
        path = "/api/nodeinfo/2.0.json"
        return [self.software("api", path, self.json(path))]

    def software(self, check: str, where: str, doc: dict[str, Any]) -> Result:
        """A NodeInfo document names this app, speaks ActivityPub, and has the pinned version."""
        software = doc.get("software")
        if not isinstance(software, dict):
            return self.result(check, Status.CRIT, f"{where}: no software object", "federation")
        name = str(software.get("name") or "").lower()
        if name != SOFTWARE[self.i.app]:
            value = f"{where}: software {name or 'unnamed'}, expected {SOFTWARE[self.i.app]}"
            return self.result(check, Status.CRIT, value, "wrong-app")
        protocols = doc.get("protocols")
        if isinstance(protocols, list) and "activitypub" not in protocols:
            value = f"{where}: protocols {protocols} lack activitypub"
            return self.result(check, Status.CRIT, value, "federation")
        return self.version(check, f"{where} reports {name}", software.get("version"))

    def nodeinfo(self) -> list[Result]:
        index = self.json("/.well-known/nodeinfo")
        links = index.get("links")
        choices: list[tuple[str, str]] = []
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                continue
            rel = str(link.get("rel") or "")
            if rel.startswith(_NODEINFO_REL) and rel[len(_NODEINFO_REL) :].startswith("2."):
                choices.append((rel[len(_NODEINFO_REL) :], link["href"]))
        if not choices:
            value = "/.well-known/nodeinfo links to no NodeInfo 2.x document"
            return [self.result("nodeinfo", Status.CRIT, value, "federation")]
        _, href = max(choices)
        parts = urlsplit(href)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or host not in self.own_hosts:
            value = f"/.well-known/nodeinfo points outside this instance: {href}"
            return [self.result("nodeinfo", Status.CRIT, value, "federation")]
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        doc = self.json(path, domain=host)
        version = str(doc.get("version") or "")
        if not version.startswith("2."):
            value = f"{parts.path}: NodeInfo version {version or 'missing'}, expected 2.x"
            return [self.result("nodeinfo", Status.CRIT, value, "federation")]
        return [self.software("nodeinfo", f"NodeInfo {version}", doc)]

    # federation: WebFinger, then the actor it links to ------------------------------------------

    def federation(self, reach: _Reach) -> list[Result]:
        domain = self.i.account_domain
        wanted = [c for c in ("webfinger", "actor") if self.wants(c)]
        if not reach.ok:
            return [self.unreached(c, reach, domain) for c in wanted]
        if not self.i.account:
            value = f"no admin account to look up; pass --account {self.i.app}=USER"
            return [self.result(c, Status.UNKNOWN, value, target=domain) for c in wanted]
        started = time.monotonic()
        try:
            finger, href = self.webfinger(domain)
        except Exception as exc:  # a bug must not cost the other checks their report
            finger, href = _internal_error(self.i, "webfinger", exc), ""
        out = _stamp([finger], started) if "webfinger" in wanted else []
        if "actor" not in wanted:
            return out
        if not href:
            value = f"not looked up: the WebFinger lookup failed ({finger.value})"
            actor = self.result(
                "actor", Status.CRIT, value, "unreachable", domain, prerequisite="webfinger"
            )
            return [*out, actor]
        started = time.monotonic()
        try:
            actor = self.actor(href, domain)
        except Exception as exc:  # a bug must not cost the other checks their report
            actor = _internal_error(self.i, "actor", exc)
        return [*out, *_stamp([actor], started)]

    def webfinger(self, domain: str) -> tuple[Result, str]:
        """The WebFinger result and the actor link it found ('' when none)."""
        acct = f"acct:{self.i.account}@{domain}"

        def crit(value: str, hint: str = "federation") -> tuple[Result, str]:
            return self.result("webfinger", Status.CRIT, value, hint, domain), ""

        path = f"/.well-known/webfinger?resource={quote(acct, safe=':@')}"
        try:
            response = self.get(path, "application/jrd+json, application/json", domain)
        except RedirectedAway as exc:
            return crit(str(exc), "redirected")
        except ProbeError as exc:
            return crit(str(exc))
        if response.status == 404:
            return crit(f"{acct}: not found (404)", "webfinger-404")
        if response.status != 200:
            return crit(f"{acct}: answered {response.status}")
        if response.media_type not in _JSON_TYPES:
            return crit(f"{acct}: answered {response.media_type or 'no content type'}, not JSON")
        try:
            doc = _mapping(response.json(), "WebFinger")
        except ProbeError as exc:
            return crit(str(exc))
        links = doc.get("links")
        href = next(
            (
                str(link["href"])
                for link in (links if isinstance(links, list) else [])
                if isinstance(link, dict)
                and link.get("rel") == "self"
                and str(link.get("type") or "").split(";")[0].strip() in _ACTIVITY_TYPES
                and isinstance(link.get("href"), str)
            ),
            "",
        )
        if not href:
            return crit(f"{acct}: no rel=self link of type application/activity+json")
        subject = str(doc.get("subject") or "")
        if subject.lower() != acct.lower():
            value = f"{acct}: subject is {subject or 'missing'}"
            return self.result("webfinger", Status.WARN, value, "federation", domain), href
        return self.result("webfinger", Status.OK, f"{acct} → {href}", target=domain), href

    def actor(self, href: str, domain: str) -> Result:
        def crit(value: str, hint: str = "federation") -> Result:
            return self.result("actor", Status.CRIT, value, hint, domain)

        parts = urlsplit(href)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or host not in self.own_hosts:
            return crit(f"the WebFinger self link points outside this instance: {href}")
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = self.get(path, "application/activity+json", host)
        except RedirectedAway as exc:
            return crit(str(exc), "redirected")
        except ProbeError as exc:
            return crit(str(exc))
        if response.status != 200:
            return crit(f"{href} answered {response.status}")
        if response.media_type not in _ACTIVITY_TYPES:
            kind = response.media_type or "no content type"
            return crit(f"{href} answered {kind}, not ActivityPub JSON")
        try:
            doc = _mapping(response.json(), "actor")
        except ProbeError as exc:
            return crit(str(exc))
        if doc.get("id") != href:
            return crit(f"the actor's id is {doc.get('id')!r}, not {href}")
        kind = str(doc.get("type") or "")
        if kind not in _ACTOR_TYPES:
            return crit(f"{href} is a {kind or 'typeless object'}, not an actor")
        return self.result("actor", Status.OK, f"{kind} {href}", target=domain)


# --- running everything --------------------------------------------------------------------------

INSTANCE_WORKERS = 8  # threads per instance: one per concurrent check of its widest stage
MAX_INSTANCES_AT_ONCE = 64
# From this many instances on, the web checks are shared out to one process per CPU core (forked
# before any thread starts), each with at least INSTANCES_PER_PROCESS of them: one interpreter
# lock spends ~9 ms of CPU per instance, so 50 instances on one core add ~0.25 s to the run, while
# a fork costs a few ms. Below it one process is as quick (bench/README.md).
SPLIT_AT = 16
INSTANCES_PER_PROCESS = 8


def check_instance(
    instance: Instance, options: Options, pool: ThreadPoolExecutor | None = None
) -> list[Result]:
    """Every selected web check of one instance (never raises).

    ``pool`` runs the checks; jobs in it never wait for each other, so instances can share one
    (``run`` does: its threads are reused instead of started anew for every instance).
    """
    if not any(options.wants(c, instance.app) for c in GROUPS["web"]):
        return []
    if pool is None:
        with ThreadPoolExecutor(INSTANCE_WORKERS, thread_name_prefix="check") as own:
            return check_instance(instance, options, own)
    try:
        return _WebChecks(instance, options, pool).run()
    except Exception as exc:  # a bug must not cost the other instances their report
        return [_internal_error(instance, "web", exc)]


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


HostChecks = Callable[[], list[Result]]


def run(instances: list[Instance], options: Options, host_checks: HostChecks | None) -> Report:
    """Run the web checks of every instance at once, and the host checks beside them."""
    started, clock = datetime.now(UTC), time.monotonic()
    options.tls_context  # noqa: B018 - built here once, before the threads share it
    shares = _shares(instances)
    children = [_Child.start(share, options) for share in shares[1:]]  # before any thread
    with ThreadPoolExecutor(1, thread_name_prefix="check-host") as pool:
        hosts = pool.submit(host_checks) if host_checks is not None else None
        results = _web_checks(shares[0], options)
        for child in children:
            results += child.results()
        if hosts is not None:
            try:
                results += hosts.result()
            except Exception as exc:  # a bug must not cost the web checks their report
                results += [_internal_error(i, "host", exc) for i in instances]
    order = {i.domain: n for n, i in enumerate(instances)}
    rank = {c: n for n, c in enumerate(CHECKS)}
    results.sort(key=lambda r: (order.get(r.instance, 0), rank.get(r.check, 99), r.target))
    return Report(instances, results, started, time.monotonic() - clock, len(shares))


def _shares(instances: list[Instance]) -> list[list[Instance]]:
    """The instances split into one share per process; the first is this process's own.

    Only a process with no other thread forks: a thread holding a lock at the fork would leave
    that lock held forever in the child.
    """
    if len(instances) < SPLIT_AT or not hasattr(os, "fork"):
        return [instances]
    stop_watchdog()  # an earlier run's, idle
    if threading.active_count() > 1:
        return [instances]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = max(1, min(cores or 1, len(instances) // INSTANCES_PER_PROCESS))
    return [instances[n::count] for n in range(count)]


@dataclass
class _Child:
    """A forked process running the web checks of its share, sending the results back pickled."""

    pid: int
    pipe: int  # read end
    instances: list[Instance]

    @classmethod
    def start(
        cls, instances: list[Instance], options: Options, work: WebChecks | None = None
    ) -> _Child:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns, never runs the parent's exit handlers
            code = 1
            try:
                os.close(read)
                results = (work or _web_checks)(instances, options)
                with os.fdopen(write, "wb") as pipe:
                    pickle.dump(results, pipe)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        return cls(pid, read, instances)

    def results(self) -> list[Result]:
        """The child's results; if it failed, an UNKNOWN for each of its instances, not a crash."""
        with os.fdopen(self.pipe, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        try:
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise ChildProcessError(
                    f"the process checking {len(self.instances)} instances "
                    + (f"exited with {code}" if code > 0 else f"was killed by signal {-code}")
                )
            results: list[Result] = pickle.loads(data)  # noqa: S301 - our own child wrote it
        except Exception as exc:
            return [_internal_error(i, "web", exc) for i in self.instances]
        return results


WebChecks = Callable[[list[Instance], Options], list[Result]]


def _web_checks(instances: list[Instance], options: Options) -> list[Result]:
    """Every web check of ``instances``, all at once, in this process."""
    at_once = max(1, min(MAX_INSTANCES_AT_ONCE, len(instances)))
    with (
        ThreadPoolExecutor(at_once, thread_name_prefix="check-instance") as pool,
        ThreadPoolExecutor(at_once * INSTANCE_WORKERS, thread_name_prefix="check") as checks,
    ):
        webs = [pool.submit(check_instance, i, options, checks) for i in instances]
        return [r for web in webs for r in web.result()]


# --- output --------------------------------------------------------------------------------------


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
        raise UsageError(f"--prometheus {path}: directory {parent} is not writable")


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


# --- option values -------------------------------------------------------------------------------


def _address(text: str, option: str, value: str) -> str:
    address = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not address or any(c.isspace() for c in address):
        raise UsageError(f"{option} {value}: {text!r} is not an address; fix: e.g. 10.0.0.5")
    return address


def _port(text: str, option: str, value: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UsageError(f"{option} {value}: {text!r} is not a port (1..65535)")
    return int(text)


def parse_resolve(values: Iterable[str]) -> dict[str, str]:
    """``--resolve DOMAIN:ADDR`` values (as curl's, without the port) as {domain: address}."""
    out: dict[str, str] = {}
    for value in values:
        domain, sep, address = value.partition(":")
        if not sep or not domain:
            raise UsageError(f"--resolve {value}: use DOMAIN:ADDRESS, e.g. social.example:10.0.0.5")
        out[domain.lower()] = _address(address, "--resolve", value)
    return out


def parse_connect_to(values: Iterable[str]) -> dict[tuple[str, int], tuple[str, int]]:
    """``--connect-to DOMAIN:PORT:ADDR:PORT`` values (as curl's) as {(domain, port): target}."""
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for value in values:
        parts = value.split(":", 2)
        if len(parts) != 3 or ":" not in parts[2] or not parts[0]:
            raise UsageError(
                f"--connect-to {value}: use DOMAIN:PORT:ADDRESS:PORT, e.g. "
                "social.example:443:127.0.0.1:8443"
            )
        address, _, port = parts[2].rpartition(":")
        key = (parts[0].lower(), _port(parts[1], "--connect-to", value))
        out[key] = (_address(address, "--connect-to", value), _port(port, "--connect-to", value))
    return out


def parse_accounts(values: Iterable[str]) -> dict[str, str]:
    """``--account APP=USER`` values as {app: username}."""
    out: dict[str, str] = {}
    for value in values:
        app, sep, user = value.partition("=")
        if app not in APPS or not sep:
            raise UsageError(f"--account {value}: use APP=USER with APP one of {', '.join(APPS)}")
        if not user or not all(c.isalnum() or c in "_.-" for c in user):
            raise UsageError(f"--account {value}: {user!r} is not a username")
        out[app] = user
    return out
