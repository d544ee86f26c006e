"""The organisation's Fediverse presence, and its conversion to Ansible inventory data.

An answers file (or the equivalent flags and prompts) uses the same keys as the inventory's
``group_vars/all/main.yml`` without the ``fedictl_`` prefix, plus ``servers`` and ``placement``
(which become ``hosts.yml``) and the two secrets the organisation provides (``smtp.password``,
``s3.secret_access_key``, which go to the vault). See docs/inventory.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from fedictl import apps
from fedictl.apps import Settings
from fedictl.errors import ValidationError, segment
from fedictl.yamlio import MAX_DIGITS, Vaulted

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# For throwaway hosts only (host_key_checking: false): their host key is new on every boot.
LAB_SSH_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
ROLES = ("database", "cache", "web", "app", "workers")


def groups() -> tuple[str, ...]:
    """Host groups of hosts.yml, all children of ``fediverse``; ``web`` is the reverse proxy."""
    return ("database", "cache", "web", *apps.names(), "workers")


def __getattr__(name: str) -> tuple[str, ...]:
    """``APPS``: the registered apps' names, read when used."""
    if name == "APPS":
        return apps.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Server:
    name: str
    address: str
    user: str = "root"
    port: int = 22
    identity_file: str = ""  # SSH private key to log in with (empty: ssh's own default)
    # False only for throwaway hosts whose host key changes on every boot (fedictl lab).
    host_key_checking: bool = True

    def host_vars(self) -> dict[str, Any]:
        """This server's connection settings as hosts.yml host variables."""
        out: dict[str, Any] = {
            "ansible_host": self.address,
            "ansible_user": self.user,
            "ansible_port": self.port,
        }
        if self.identity_file:
            out["ansible_ssh_private_key_file"] = self.identity_file
        if not self.host_key_checking:
            out["ansible_ssh_common_args"] = LAB_SSH_ARGS
        return out


@dataclass
class Smtp:
    host: str = ""
    port: int = 587
    user: str = ""
    password: str = ""  # secret: written to the vault as vault_smtp_password
    from_address: str = ""
    tls: str = "starttls"  # starttls (port 587) | tls (implicit TLS, port 465) | none


@dataclass
class Acme:
    email: str = ""
    directory_url: str = LETSENCRYPT
    # PEM file of a private ACME CA's API certificate, for certbot (lab CAs); empty = public CA.
    ca_file: str = ""


@dataclass
class Retention:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12


@dataclass
class Backup:
    repository: str = ""  # a restic repository URL, e.g. sftp:backup@host:/srv/restic/org
    retention: Retention = field(default_factory=Retention)


@dataclass
class S3:
    enabled: bool = False
    endpoint: str = ""
    bucket: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""  # secret: written to the vault as vault_s3_secret_access_key
    public_host: str = ""  # where media are served from (a CDN, or this server with proxy)
    permission: str = ""  # canned ACL per upload: '' (the apps' default), private, public-read
    proxy: bool = False  # nginx on the web hosts serves public_host from the bucket


@dataclass
class Placement:
    """Host name per role (ROLES) and per app, where an app's overrides ``app`` for that app."""

    hosts: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.hosts.get(key, "")


def placement_keys() -> tuple[str, ...]:
    return (*ROLES, *apps.names())


@dataclass
class Organisation:
    org_name: str
    admin_email: str
    servers: list[Server]
    apps: dict[str, Settings]
    admin_ssh_keys: list[str] = field(default_factory=list)
    placement: Placement = field(default_factory=Placement)
    smtp: Smtp = field(default_factory=Smtp)
    acme: Acme = field(default_factory=Acme)
    backup: Backup = field(default_factory=Backup)
    s3: S3 = field(default_factory=S3)

    def host_for(self, role: str) -> str:
        """The server holding ``role`` (a ROLES entry or an app name); default the first."""
        chosen = self.placement.get(role)
        if not chosen and role in apps.names():
            chosen = self.placement.get("app")
        return chosen or self.servers[0].name

    # --- inventory data -----------------------------------------------------------------------

    def hosts_yml(self) -> dict[str, Any]:
        hosts = {s.name: s.host_vars() for s in self.servers}
        children: dict[str, Any] = {}
        for group in groups():
            if group in apps.names() and group not in self.apps:
                children[group] = {}
                continue
            children[group] = {"hosts": {self.host_for(group): {}}}
        return {"all": {"children": {"fediverse": {"hosts": hosts, "children": children}}}}

    def main_yml(self) -> dict[str, Any]:
        by_app: dict[str, Any] = {}
        for app in apps.registered():
            settings = self.apps.get(app.name) or app.settings()
            by_app[app.name] = {"enabled": app.name in self.apps, **dataclasses.asdict(settings)}
        smtp = dataclasses.asdict(self.smtp)
        del smtp["password"]
        s3 = dataclasses.asdict(self.s3)
        del s3["secret_access_key"]
        return {
            "fedictl_org_name": self.org_name,
            "fedictl_admin_email": self.admin_email,
            "fedictl_admin_ssh_keys": list(self.admin_ssh_keys),
            "fedictl_apps": by_app,
            "fedictl_smtp": smtp,
            "fedictl_acme": {k: v for k, v in dataclasses.asdict(self.acme).items() if v != ""},
            "fedictl_backup": dataclasses.asdict(self.backup),
            "fedictl_s3": s3,
        }

    def provided_secrets(self) -> dict[str, str]:
        return {
            "vault_smtp_password": self.smtp.password,
            "vault_s3_secret_access_key": self.s3.secret_access_key,
        }


# --- answers → model ---------------------------------------------------------------------------


_INVALID = object()  # a value the collector reported


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Collector:
    """Collects every problem in the answers, so the user sees them all at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, key: str, found: str, fix: str) -> None:
        self.problems.append(f"{self.source}: {key}: found {found}; fix: {fix}")

    def mapping(self, data: object, key: str) -> tuple[Mapping[Any, Any], bool]:
        """``data`` as a mapping (None: empty); anything else is reported, and quiet after."""
        if data is None:
            return {}, False
        if not isinstance(data, Mapping):
            self.add(key, f"a {type(data).__name__}", "make it a mapping of its settings")
            return {}, True
        return data, False

    def known(self, name: object, names: Sequence[str], key: str) -> bool:
        if name in names:
            return True
        self.add(
            f"{key}.{segment(name)}", "an unknown key", f"remove it; known keys: {', '.join(names)}"
        )
        return False

    def value(self, hint: Any, value: object, sub: str, shown: str) -> Any:
        """``value`` coerced to the field type ``hint``; _INVALID (reported) if it cannot be."""
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, sub)  # type: ignore[arg-type]
        if isinstance(value, Vaulted):
            self.add(
                sub,
                "an inline !vault value",
                "write it in plain text (init encrypts the vault), give it in the environment "
                "(FEDICTL_SMTP_PASSWORD, FEDICTL_S3_SECRET_ACCESS_KEY), or pass "
                "--vault-password-file to decrypt it",
            )
        elif hint is bool:
            if isinstance(value, bool):
                return value
            self.add(sub, shown, "write true or false")
        elif hint is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            digits = value.strip() if isinstance(value, str) else ""
            if digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS:
                return int(digits)
            self.add(sub, shown, "write a whole number")
        elif value is None:
            return ""
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        else:
            self.add(sub, shown, "write a single text value")
        return _INVALID

    def build(self, cls: type[Any], data: object, key: str, secret: tuple[str, ...] = ()) -> Any:
        """A ``cls`` from mapping ``data``; scalar fields coerced, unknown keys reported."""
        entries, quiet = self.mapping(data, key)
        hints = get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for name, value in entries.items():
            if not self.known(name, names, key):
                continue
            shown = "a value" if name in secret else _describe(value)
            got = self.value(hints[name], value, f"{key}.{segment(name)}", shown)
            if got is not _INVALID:
                values[name] = got
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in values
        ]
        for name in missing:
            if name not in entries and not quiet:
                self.add(f"{key}.{name}", "nothing", f"set {key}.{name}")
            values[name] = ""
        return cls(**values)

    def texts(self, data: object, key: str, names: Sequence[str]) -> dict[str, str]:
        """A mapping of text values whose keys may only be ``names``."""
        entries, _ = self.mapping(data, key)
        values: dict[str, str] = {}
        for name, value in entries.items():
            if self.known(name, names, key):
                got = self.value(str, value, f"{key}.{segment(name)}", _describe(value))
                if got is not _INVALID:
                    values[name] = got
        return values


_TOP_KEYS = (
    "org_name",
    "admin_email",
    "admin_ssh_keys",
    "apps",
    "servers",
    "placement",
    "smtp",
    "acme",
    "backup",
    "s3",
)


def from_answers(answers: Mapping[str, Any], source: str = "answers") -> Organisation:
    """Build the model from answers (file, flags or prompts merged). Raises ValidationError.

    Only shape and types are checked here; ``fedictl.validate`` checks the meaning (domains,
    e-mails, collisions, ...) on the inventory data, so init and validate agree.
    """
    c = _Collector(source)
    for key in answers:
        if key not in _TOP_KEYS:
            c.add(segment(key), "an unknown key", f"remove it; known keys: {', '.join(_TOP_KEYS)}")

    def text(key: str) -> str:
        value = answers.get(key)
        if value is None:
            c.add(key, "nothing", f"set {key}")
            return ""
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        c.add(key, _describe(value), "write a single text value")
        return ""

    org_name, admin_email = text("org_name"), text("admin_email")
    admin_ssh_keys: list[str] = []
    raw_keys = answers.get("admin_ssh_keys")
    if isinstance(raw_keys, str):
        raw_keys = [raw_keys]
    if isinstance(raw_keys, list) and all(isinstance(k, str) for k in raw_keys):
        admin_ssh_keys = [k.strip() for k in raw_keys if k.strip()]
    elif raw_keys is not None:
        c.add("admin_ssh_keys", _describe(raw_keys), "write a list of SSH public keys")

    chosen_apps: dict[str, Settings] = {}
    raw_apps = answers.get("apps")
    if isinstance(raw_apps, list):  # a plain list of app names, each with defaults
        raw_apps = {name: {} for name in raw_apps if isinstance(name, str)}
    if not isinstance(raw_apps, Mapping) or not raw_apps:
        c.add(
            "apps",
            _describe(raw_apps) if raw_apps else "nothing",
            f"enable at least one of {', '.join(apps.names())} with its domain",
        )
        raw_apps = {}
    for name, settings in raw_apps.items():
        if name not in apps.names():
            c.add(
                f"apps.{segment(name)}", "an unknown app", f"use one of {', '.join(apps.names())}"
            )
            continue
        chosen_apps[name] = c.build(apps.get(name).settings, settings, f"apps.{name}")

    servers: list[Server] = []
    raw_servers = answers.get("servers")
    if not isinstance(raw_servers, list) or not raw_servers:
        c.add(
            "servers",
            _describe(raw_servers) if raw_servers else "nothing",
            "list at least one server with name and address",
        )
        raw_servers = []
    for index, raw in enumerate(raw_servers):
        servers.append(c.build(Server, raw, f"servers[{index}]"))
    if not servers:
        servers = [Server(name="", address="")]

    org = Organisation(
        org_name=org_name,
        admin_email=admin_email,
        servers=servers,
        apps=chosen_apps,
        admin_ssh_keys=admin_ssh_keys,
        placement=Placement(c.texts(answers.get("placement"), "placement", placement_keys())),
        smtp=c.build(Smtp, answers.get("smtp"), "smtp", secret=("password",)),
        acme=c.build(Acme, answers.get("acme"), "acme"),
        backup=c.build(Backup, answers.get("backup"), "backup"),
        s3=c.build(S3, answers.get("s3"), "s3", secret=("secret_access_key",)),
    )
    names = [s.name for s in servers]
    for index, name in enumerate(names):
        if name in names[:index]:
            c.add(f"servers[{index}].name", repr(name) + " twice", "give each server its own name")
    for role in placement_keys():
        chosen = org.placement.get(role)
        if chosen and chosen not in names:
            c.add(
                f"placement.{role}",
                f"{_describe(chosen)}, not a server name",
                f"use one of {', '.join(map(repr, names))}",
            )
    if not org.acme.email:
        org.acme.email = org.admin_email
    if c.problems:
        raise ValidationError(c.problems)
    return org


def answers_key(inventory_key: str) -> str:
    """The answers key for an inventory key path (``fedictl_smtp.port`` → ``smtp.port``)."""
    special = {
        "vault_smtp_password": "smtp.password",
        "vault_s3_secret_access_key": "s3.secret_access_key",
    }
    if inventory_key in special:
        return special[inventory_key]
    if inventory_key.startswith("fedictl_apps."):
        return "apps." + inventory_key.removeprefix("fedictl_apps.")
    return inventory_key.removeprefix("fedictl_")
