"""The web checks of one instance, as a Fediverse peer or a visitor depends on them.

DNS, the HTTP→HTTPS redirect, HTTPS, the certificate and its expiry, the app's health and API
endpoints, NodeInfo, WebFinger and the ActivityPub actor, with the endpoints each app declares
(``fedictl/apps/``). A probe failure is a result with its reason, never an exception.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from fedictl import apps, releases
from fedictl.check.model import GROUPS, Instance, Metric, Result, Status, internal_error
from fedictl.check.options import Options
from fedictl.check_http import (
    Deadline,
    Pool,
    ProbeError,
    RedirectedAway,
    Response,
    TlsProbe,
    get,
    get_following,
    probe_tls,
    reading_context,
)

_T = TypeVar("_T")

INSTANCE_WORKERS = 8  # threads per instance: one per concurrent check of its widest stage

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
    "release": "move to {release}: `fedictl upgrade {app} --to {release} -i INVENTORY` "
    "(upstream's release notes: https://github.com/{app}/{app}/releases)",
    "release-line": "read upstream's notes for the line it runs, and upgrade fedictl to know it",
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
        self.app = apps.get(instance.app)
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
            ("health", self.declared("health")),
            ("streaming", self.declared("streaming")),
            ("api", self.api),  # also judges the release against the known ones ("release")
            ("nodeinfo", self.nodeinfo),
        ):
            if self.wants(check) or (check == "api" and self.wants("release")):
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
            return [internal_error(self.i, check, exc)]

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
            results = [internal_error(self.i, check, exc)]
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

    def declared(self, check: str) -> Callable[[], list[Result]]:
        """The plain-text check ``check`` at the endpoint the app declares for it."""

        def probe() -> list[Result]:
            endpoint = self.app.endpoint(check)
            if endpoint is None:
                raise ProbeError(f"{self.i.app} declares no endpoint for {check}")
            return self.text_endpoint(check, endpoint.path, endpoint.expected)

        return probe

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
        """The API's version against the pin ("api"), and against the known releases ("release")."""
        api = self.app.api
        data = self.json(api.path)
        if not api.version_key:  # a NodeInfo document
            found = (data.get("software") or {}).get("version") if isinstance(data, dict) else None
            pinned = self.software("api", api.path, data)
        else:
            if api.domain_key:
                domain = str(data.get(api.domain_key) or "")
                if domain.lower() != self.i.account_domain:
                    value = (
                        f"{api.path} is for {domain or 'no domain'}, not {self.i.account_domain}"
                    )
                    return [self.result("api", Status.CRIT, value, "wrong-app")]
            found = data.get(api.version_key)
            pinned = self.version("api", api.path, found)
        out = [pinned] if self.wants("api") else []
        if self.wants("release") and self.app.lines:
            out.append(self.release(str(found or "")))
        return out

    def release(self, found: str) -> Result:
        """The running version against the releases fedictl knows (fedictl/releases.py)."""
        known = releases.verdict(self.i.app, self.app.lines, found.split("+", 1)[0])
        if known.level == "OK":
            return self.result("release", Status.OK, known.message)
        status = {"WARN": Status.WARN, "CRIT": Status.CRIT}.get(known.level, Status.UNKNOWN)
        if known.target:
            return self.result("release", status, known.message, "release", release=known.target)
        return self.result("release", status, known.message, "release-line")

    def software(self, check: str, where: str, doc: dict[str, Any]) -> Result:
        """A NodeInfo document names this app, speaks ActivityPub, and has the pinned version."""
        software = doc.get("software")
        if not isinstance(software, dict):
            return self.result(check, Status.CRIT, f"{where}: no software object", "federation")
        name = str(software.get("name") or "").lower()
        if name != self.app.software:
            value = f"{where}: software {name or 'unnamed'}, expected {self.app.software}"
            return self.result(check, Status.CRIT, value, "wrong-app")
        protocols = doc.get("protocols")
        if isinstance(protocols, list) and "activitypub" not in protocols:
            value = f"{where}: protocols {protocols} lack activitypub"
            return self.result(check, Status.CRIT, value, "federation")
        return self.version(check, f"{where} reports {name}", software.get("version"))

    def nodeinfo(self) -> list[Result]:
        where = self.app.nodeinfo
        index = self.json(where)
        links = index.get("links")
        choices: list[tuple[str, str]] = []
        for link in links if isinstance(links, list) else []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                continue
            rel = str(link.get("rel") or "")
            if rel.startswith(_NODEINFO_REL) and rel[len(_NODEINFO_REL) :].startswith("2."):
                choices.append((rel[len(_NODEINFO_REL) :], link["href"]))
        if not choices:
            value = f"{where} links to no NodeInfo 2.x document"
            return [self.result("nodeinfo", Status.CRIT, value, "federation")]
        _, href = max(choices)
        parts = urlsplit(href)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or host not in self.own_hosts:
            value = f"{where} points outside this instance: {href}"
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
            finger, href = internal_error(self.i, "webfinger", exc), ""
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
            actor = internal_error(self.i, "actor", exc)
        return [*out, *_stamp([actor], started)]

    def fetch(self, path: str, accept: str, domain: str) -> Response | tuple[str, str]:
        """The answer to a federation request, or why there is none and the hint for it."""
        try:
            return self.get(path, accept, domain)
        except RedirectedAway as exc:
            return str(exc), "redirected"
        except ProbeError as exc:
            return str(exc), "federation"

    def webfinger(self, domain: str) -> tuple[Result, str]:
        """The WebFinger result and the actor link it found ('' when none)."""
        acct = f"acct:{self.i.account}@{domain}"

        def crit(value: str, hint: str = "federation") -> tuple[Result, str]:
            return self.result("webfinger", Status.CRIT, value, hint, domain), ""

        path = f"{self.app.webfinger}?resource={quote(acct, safe=':@')}"
        response = self.fetch(path, "application/jrd+json, application/json", domain)
        if isinstance(response, tuple):
            return crit(*response)
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
        response = self.fetch(path, "application/activity+json", host)
        if isinstance(response, tuple):
            return crit(*response)
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
        return [internal_error(instance, "web", exc)]
