"""How ``fedictl check`` runs: the checks chosen, thresholds, deadlines, and option values."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fedictl import apps, yamlio
from fedictl.check.model import CHECKS, GROUPS
from fedictl.check_http import Network, verifying_context
from fedictl.errors import UsageError, shown


def app_only_checks() -> frozenset[str]:
    """Checks that only the apps declaring them have (Mastodon's streaming and Sidekiq)."""
    return frozenset(check for app in apps.registered() for check in app.checks)


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
                    f"{option} {shown(name)}: no such check; fix: use one of {', '.join(CHECKS)} "
                    f"or a group ({', '.join(GROUPS)})"
                )
    return chosen


def selected_checks(only: Iterable[str], skip: Iterable[str]) -> frozenset[str]:
    chosen = expand_checks(only, "--only") or set(CHECKS)
    return frozenset(chosen - expand_checks(skip, "--skip"))


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
            raise UsageError(
                f"--timeout {self.timeout:g}: use 0 < seconds <= 300; fix: e.g. --timeout 10"
            )

    def check_ca_file(self) -> None:
        """``--ca-file``, if given, is a readable PEM bundle: UsageError before any check runs."""
        if self.ca_file is None:
            return
        fix = "pass the CA's certificate in PEM form (a file with -----BEGIN CERTIFICATE-----)"
        try:
            yamlio.read_bytes(self.ca_file, 16 * 1024 * 1024, fix)
            self.tls_context  # noqa: B018 - loading the bundle is the check
        except yamlio.YamlError as exc:
            raise UsageError(f"--ca-file {self.ca_file}: {exc.found}; fix: {fix}") from exc
        except (ssl.SSLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UsageError(
                f"--ca-file {self.ca_file}: not a CA certificate bundle ({reason}); fix: {fix}"
            ) from exc

    def wants(self, check: str, app: str) -> bool:
        """``check`` is chosen, and is either every app's or one ``app`` declares as its own."""
        if check not in self.checks:
            return False
        declared = apps.find(app)
        return check not in app_only_checks() or (declared is not None and check in declared.checks)

    @functools.cached_property
    def tls_context(self) -> ssl.SSLContext:
        """One verifying context for every probe (``run`` makes it before any thread starts)."""
        return verifying_context(self.ca_file)


# --- option values -------------------------------------------------------------------------------


def _address(text: str, option: str, value: str) -> str:
    address = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not address or any(c.isspace() for c in address):
        raise UsageError(f"{option} {shown(value)}: {text!r} is not an address; fix: e.g. 10.0.0.5")
    return address


def _port(text: str, option: str, value: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 65535:
        raise UsageError(f"{option} {shown(value)}: {text!r} is not a port; fix: use 1..65535")
    return int(text)


def parse_resolve(values: Iterable[str]) -> dict[str, str]:
    """``--resolve DOMAIN:ADDR`` values (as curl's, without the port) as {domain: address}."""
    out: dict[str, str] = {}
    for value in values:
        domain, sep, address = value.partition(":")
        if not sep or not domain:
            raise UsageError(
                f"--resolve {shown(value)}: use DOMAIN:ADDRESS; fix: e.g. social.example:10.0.0.5"
            )
        out[domain.lower()] = _address(address, "--resolve", value)
    return out


def parse_connect_to(values: Iterable[str]) -> dict[tuple[str, int], tuple[str, int]]:
    """``--connect-to DOMAIN:PORT:ADDR:PORT`` values (as curl's) as {(domain, port): target}."""
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for value in values:
        parts = value.split(":", 2)
        if len(parts) != 3 or ":" not in parts[2] or not parts[0]:
            raise UsageError(
                f"--connect-to {shown(value)}: use DOMAIN:PORT:ADDRESS:PORT; fix: e.g. "
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
        if app not in apps.names() or not sep:
            raise UsageError(
                f"--account {shown(value)}: use APP=USER; fix: with APP one of "
                f"{', '.join(apps.names())}"
            )
        if not user or not all(c.isalnum() or c in "_.-" for c in user):
            raise UsageError(
                f"--account {shown(value)}: {user!r} is not a username; fix: use letters, digits, "
                "'_', '.' and '-'"
            )
        out[app] = user
    return out
