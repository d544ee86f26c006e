"""The app registry: everything fedictl's Python side knows about each app, declared in one place.

Each module of this package declares one app as ``APP = App(...)``: its inventory settings and
their defaults, which of them are domains, ports and Redis databases, its secrets and their
formats, its endpoints for ``fedictl check``, the account WebFinger looks up, its units and disk
paths, and the wizard's questions. ``model``, ``validate``, ``secrets``, ``check``, ``upgrade`` and
the wizard read these declarations; none of them names an app. Adding an app means adding a
module here (and its roles and playbooks).

The modules are found on first use (``pkgutil`` over this package, in name order); ``register``
adds an app at run time (the tests declare a fake one that way). Imports no click.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from fedictl.errors import FedictlError
from fedictl.releases import Line, validate_lines
from fedictl.secret_formats import SecretPair, SecretSpec

# Settings every app has: validate checks them the same way for each.
COMMON_SETTINGS = ("version", "db_name", "db_user")
# A release tag: v<major>.<minor>.<patch> without leading zeros, optionally -rc, -beta or -alpha
# with a number. An app whose role checks its own pattern declares that one instead.
VERSION_PATTERN = (
    r"^v(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})"
    r"(-(rc|beta|alpha)(\.?[0-9]{1,3})?)?$"
)


class Settings(Protocol):
    """An app's inventory settings: a dataclass whose fields are ``fedictl_apps.<app>`` keys."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    version: str
    db_name: str
    db_user: str


@dataclass(frozen=True)
class TextSetting:
    """An optional text setting the playbooks read: its check and what to write instead."""

    check: Callable[[object], bool]
    what: str


@dataclass(frozen=True)
class Rule:
    """A check across settings: the key it reports, and the finding (found, fix) or None."""

    key: str
    problem: Callable[[Mapping[str, Any]], tuple[str, str] | None]


@dataclass(frozen=True)
class TextEndpoint:
    """A plain-text endpoint and the exact body a healthy app answers."""

    path: str
    expected: str


@dataclass(frozen=True)
class ApiEndpoint:
    """The JSON endpoint that reports the running version.

    ``version_key`` names the version in it; empty means the endpoint is a NodeInfo document
    (software name and version). ``domain_key``, if set, must equal the handle domain.
    """

    path: str
    version_key: str = ""
    domain_key: str = ""


@dataclass(frozen=True)
class Question:
    """A wizard question about one setting: its flag, prompt and default (None: required)."""

    setting: str
    flag: str
    prompt: str
    default: str | None = None


@dataclass(frozen=True)
class App:
    """One app, as the CLI knows it. ``name`` is its key in ``fedictl_apps`` and its host group."""

    name: str
    settings: type[Settings]  # its settings and their defaults
    software: str  # the software name it reports in NodeInfo
    health: TextEndpoint
    api: ApiEndpoint
    account: str  # the account WebFinger looks up, unless ``account_setting`` names another
    account_setting: str = ""
    domain: str = "domain"  # the setting holding the handle domain
    web_domain: str = ""  # the setting of an optional separate web domain ('' when none)
    ports: tuple[str, ...] = ()  # local ports, one per setting
    redis: tuple[str, ...] = ("redis_db",)  # Redis database numbers, one per setting
    optional_text: Mapping[str, TextSetting] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    secret_pairs: tuple[SecretPair, ...] = ()
    upgradable: bool = False  # `fedictl upgrade` knows its upgrade path
    # The setting (and role variable suffix) holding a release archive's checksum, and whether it is
    # written sha256:<hex> (else the bare 64 hex digits).
    checksum_setting: str = "release_archive_checksum"
    checksum_prefixed: bool = True
    version_pattern: str = VERSION_PATTERN  # the release tags validate accepts (as its role)
    text_checks: Mapping[str, TextEndpoint] = field(default_factory=dict)  # check -> endpoint
    checks: tuple[str, ...] = ()  # checks only this app has (fedictl check's names)
    nodeinfo: str = "/.well-known/nodeinfo"
    webfinger: str = "/.well-known/webfinger"
    units: tuple[str, ...] = ()  # systemd units on its hosts; ``{setting}`` is replaced
    disk_paths: tuple[str, ...] = ("/",)  # filesystems on its hosts whose free space matters
    questions: tuple[Question, ...] = ()
    # The release lines fedictl knows (requirements, known releases and the advisories each fixes):
    # shipped with fedictl, never fetched (fedictl/releases.py). Empty: `check` judges no release.
    lines: tuple[Line, ...] = ()

    @property
    def domains(self) -> tuple[str, ...]:
        """The domain settings: the handle domain first, then the web domain if it has one."""
        return (self.domain, self.web_domain) if self.web_domain else (self.domain,)

    @property
    def fields(self) -> tuple[str, ...]:
        """Its settings' keys, in the order they are written."""
        return tuple(f.name for f in dataclasses.fields(self.settings))

    def endpoint(self, check: str) -> TextEndpoint | None:
        """The plain-text endpoint of ``check`` (``health`` or one of its own)."""
        return self.health if check == "health" else self.text_checks.get(check)


class RegistryError(FedictlError):
    """An app declaration that cannot be used: its module must be corrected."""


_lock = threading.RLock()
_apps: dict[str, App] = {}
_discovered = False


def _problems(app: App) -> list[str]:
    known = {*app.fields, *app.optional_text}
    named = [*COMMON_SETTINGS, *app.domains, *app.ports, *app.redis]
    named += [q.setting for q in app.questions] + [r.key for r in app.rules]
    if app.account_setting:
        named.append(app.account_setting)
    problems = [f"{app.name}: no setting {name!r}" for name in named if name not in known]
    if not app.name.isidentifier():
        problems.append(f"{app.name!r}: an app name must be a Python identifier")
    problems += validate_lines(app.name, app.lines)
    return problems


def _add(app: App) -> None:
    problems = _problems(app)
    if app.name in _apps:
        problems.append(f"{app.name}: declared twice")
    if problems:
        raise RegistryError("; ".join(problems))
    _apps[app.name] = app


def _registry() -> dict[str, App]:
    global _discovered
    if _discovered:
        return _apps
    with _lock:
        if not _discovered:
            for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                name = f"{__name__}.{module.name}"
                declared = getattr(importlib.import_module(name), "APP", None)
                if not isinstance(declared, App):
                    raise RegistryError(f"{name} declares no APP = App(...)")
                _add(declared)
            _discovered = True
        return _apps


def register(app: App) -> None:
    """Add ``app`` to the registry (after the discovered ones). RegistryError if unusable."""
    with _lock:
        _registry()
        _add(app)


def unregister(name: str) -> None:
    with _lock:
        _registry().pop(name, None)


def registered() -> tuple[App, ...]:
    """Every app, discovered ones in module-name order, then registered ones."""
    return tuple(_registry().values())


def names() -> tuple[str, ...]:
    return tuple(_registry())


def get(name: str) -> App:
    """The app called ``name``; KeyError if there is none."""
    return _registry()[name]


def find(name: str) -> App | None:
    """The app called ``name``, or None."""
    return _registry().get(name)


def enabled(fedictl_apps: object) -> list[str]:
    """The apps ``fedictl_apps`` (the inventory variable) enables, in registry order."""
    if not isinstance(fedictl_apps, Mapping):
        return []
    return [
        name
        for name in names()
        if isinstance(fedictl_apps.get(name), Mapping) and fedictl_apps[name].get("enabled") is True
    ]
