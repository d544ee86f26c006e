"""Check a loaded inventory against fedictl's schema; return every problem at once.

Each problem names the file, the key path, what was found and how to fix it. Secret values are
never shown: a finding about a secret describes its length or shape only.

Besides each setting's own check, every string of every ``fedictl_*`` and ``vault_*`` variable
(and the connection variables) is checked for what no setting may hold: a control character or
line break (the roles write these values into line-oriented files: ``.env``, ``restic.env``,
systemd units), template syntax Ansible would render (a value not written ``!unsafe``), or an
inline ``!vault`` value the password cannot open; credentials the apps' ``.env`` files quote may
hold no quote. The checks the roles make at deploy time are made here too (names Ansible and
PostgreSQL reserve, the version patterns the roles accept), so deploy is not where they fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fedictl import apps, names, secrets, vault, yamlio
from fedictl.apps import App
from fedictl.errors import FedictlError, segment
from fedictl.inventory import HOSTS, VAULT, Inventory, Problem, load, password_file_for
from fedictl.model import groups

_EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@" + names.DOMAIN.pattern)
_PG_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")
_RESTIC_RE = re.compile(r"(?:/\S+|(?:sftp|rest|s3|b2|azure|gs|swift|rclone):\S+)")
_URL_RE = re.compile(r"https://(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::\d{1,5})?(?:/\S*)?")
# Optional settings of every app the playbooks read (playbooks/database.yml): name -> range.
_OPTIONAL_APP_KEYS = {"db_connections": (1, 10000)}
SMTP_TLS = ("starttls", "tls", "none")
REDIS_DBS = 16  # redis.conf `databases 16`
_SMTP_KEYS = ("host", "port", "user", "from_address", "tls")
_ACME_KEYS = ("email", "directory_url", "ca_file")
_S3_KEYS = (
    "enabled",
    "endpoint",
    "bucket",
    "region",
    "access_key_id",
    "public_host",
    "permission",
    "proxy",
)
# Canned ACLs the apps may send with each upload ('' = the app's default, public-read).
_S3_PERMISSIONS = ("", "private", "public-read")
_FIX_SECRET = "run `fedictl secrets ensure -i INVENTORY` to generate it"  # noqa: S105 - advice, not a secret
# Host names Ansible gives a meaning of its own (the implicit localhost, the built-in groups).
ANSIBLE_NAMES = ("localhost", "127.0.0.1", "::1", "all", "ungrouped")
# PostgreSQL's own databases and roles, and its reserved key words (PostgreSQL 17, Appendix C:
# "reserved" and "reserved (can be function or type)"); names starting pg_ are PostgreSQL's too.
_PG_WORDS = (
    "postgres template0 template1 public all analyse analyze and any array as asc",
    "asymmetric authorization binary both case cast check collate collation column",
    "concurrently constraint create cross current_catalog current_date current_role",
    "current_schema current_time current_timestamp current_user default deferrable desc",
    "distinct do else end except false fetch for foreign freeze from full grant group",
    "having ilike in initially inner intersect into is isnull join lateral leading left",
    "like limit localtime localtimestamp natural not notnull null offset on only or order",
    "outer overlaps placing primary references returning right select session_user",
    "similar some symmetric system_user table tablesample then to trailing true union",
    "unique user using variadic verbose when where window with",
)
PG_RESERVED = frozenset(word for line in _PG_WORDS for word in line.split())
# Variables whose strings are checked for control characters and templates, besides fedictl_*
# and vault_*: the connection settings hosts.yml holds.
_CONNECTION_VARS = (
    "ansible_host",
    "ansible_user",
    "ansible_ssh_private_key_file",
    "ansible_ssh_common_args",
)
# A private key spans lines; every other value is one line.
_MULTILINE = ("vault_backup_ssh_private_key",)
# Credentials the apps' .env files write in quotes (roles/mastodon: .env.production).
_NO_QUOTES = (
    "fedictl_smtp.user",
    "fedictl_smtp.from_address",
    "vault_smtp_password",
    "fedictl_s3.access_key_id",
    "vault_s3_secret_access_key",
)


_SSH_KEY_RE = re.compile(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)"
    r"@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\n]*)?"
)


def describe(value: object) -> str:
    if value is None or value == "":
        return "nothing"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


is_domain = names.is_domain


def is_email(value: object) -> bool:
    return isinstance(value, str) and bool(_EMAIL_RE.fullmatch(value))


def _is_pem_file(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        data = yamlio.read_bytes(Path(value).expanduser(), limit=1024 * 1024)
    except yamlio.YamlError:
        return False
    return b"-----BEGIN CERTIFICATE-----" in data


def is_pg_name(value: object) -> bool:
    """A name the roles accept for a database or its owner, and PostgreSQL does not reserve."""
    return (
        isinstance(value, str)
        and _PG_NAME_RE.fullmatch(value) is not None
        and value not in PG_RESERVED
        and not value.startswith("pg_")
    )


def _strings(key: str, value: object) -> Iterable[tuple[str, object]]:
    """(key path, leaf) for every leaf of ``value``, keys joined as validate names them."""
    if isinstance(value, dict):
        for name, child in value.items():
            yield from _strings(f"{key}.{segment(name)}", child)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(f"{key}[{index}]", child)
    else:
        yield key, value


def value_problem(key: str, value: object) -> tuple[str, str] | None:
    """(found, fix) for a leaf no setting may hold (see the module docstring), or None."""
    if isinstance(value, yamlio.Vaulted):
        return (
            "an inline !vault value this vault password cannot decrypt",
            "encrypt it again with `ansible-vault encrypt_string` and fedictl's password file",
        )
    if not isinstance(value, str):
        return None
    checked = value.replace("\n", "") if key in _MULTILINE else value
    if (bad := yamlio.control_character(checked)) is not None:
        return (
            bad,
            "remove it: the value is written into line-oriented files (.env, restic.env, "
            "systemd units), where it would start a new line",
        )
    if isinstance(value, yamlio.Templated):
        return (
            "a Jinja template ({{ }}, {% %} or {# #}) that Ansible would evaluate",
            "write the value as !unsafe '...' (as `fedictl init` does) so Ansible takes it "
            "as written, or remove the braces",
        )
    if key in _NO_QUOTES and ("'" in value or '"' in value):
        return (
            "a quote (' or \")",
            "use a value without quotes: the apps' .env files quote it, and cannot hold one",
        )
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_is_ip = names.is_ip_address


def _is_address(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    return (
        names.is_ip_address(value)
        or names.is_domain(value.lower())
        or bool(_HOSTNAME_RE.fullmatch(value))
    )


class _Checker:
    def __init__(self, inv: Inventory, host: str | None, variables: dict[str, Any]) -> None:
        self.inv = inv
        self.host = host
        self.vars = variables
        self.problems: list[Problem] = []
        self.flagged: set[str] = set()  # keys with a value_problem: one finding per key is enough

    def add(self, key: str, found: str, fix: str, file: str | None = None) -> None:
        if key not in self.flagged:
            self.problems.append(Problem(file or self.inv.source(key, self.host), key, found, fix))

    def values(self) -> None:
        """Every string of fedictl's variables and the connection settings (value_problem)."""
        tops = [k for k in sorted(self.vars) if k.startswith(("fedictl_", "vault_"))]
        for top in tops + [v for v in _CONNECTION_VARS if v in self.vars]:
            shown = top if top not in _CONNECTION_VARS else f"hosts.{self.host}.{top}"
            for key, leaf in _strings(shown, self.vars[top]):
                if (finding := value_problem(key, leaf)) is not None:
                    self.add(key, *finding, file=self.inv.source(top, self.host))
                    self.flagged.add(key)

    def mapping(
        self, key: str, value: object, known: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """``value`` if it is a mapping (reporting unknown keys), else report and return {}."""
        if value is None:
            self.add(key, "nothing", "set it (see docs/inventory.md)")
            return {}
        if not isinstance(value, dict):
            self.add(key, f"a {type(value).__name__}", "make it a mapping (see docs/inventory.md)")
            return {}
        if known is not None:
            allowed = list(known)
            for extra in sorted(set(value) - set(allowed), key=str):
                self.add(
                    f"{key}.{segment(extra)}",
                    "an unknown key",
                    f"remove it or correct its spelling; known: {', '.join(allowed)}",
                )
        return value

    def text(self, key: str, value: object, ok: Callable[[object], bool], what: str) -> None:
        if not ok(value):
            self.add(key, describe(value), f"set it to {what}")

    def integer(self, key: str, value: object, low: int, high: int) -> int | None:
        number = _int(value)
        if number is None or not low <= number <= high:
            self.add(key, describe(value), f"set it to a whole number from {low} to {high}")
            return None
        return number

    # --- settings -----------------------------------------------------------------------------

    def settings(self) -> None:
        self.values()
        v = self.vars
        self.text(
            "fedictl_org_name",
            v.get("fedictl_org_name"),
            lambda x: isinstance(x, str) and bool(x.strip()),
            "the organisation's name",
        )
        self.text(
            "fedictl_admin_email",
            v.get("fedictl_admin_email"),
            is_email,
            "an e-mail address like admin@example.org",
        )
        keys = v.get("fedictl_admin_ssh_keys")
        if not isinstance(keys, list) or not keys:
            self.add(
                "fedictl_admin_ssh_keys",
                describe(keys),
                "list your SSH public key(s) (e.g. the line in ~/.ssh/id_ed25519.pub); "
                "servers get password logins switched off",
            )
        else:
            for index, key in enumerate(keys):
                if not (isinstance(key, str) and _SSH_KEY_RE.fullmatch(key.strip())):
                    self.add(
                        f"fedictl_admin_ssh_keys[{index}]",
                        describe(key),
                        "write one SSH public key: 'ssh-ed25519 AAAA... comment'",
                    )
        enabled = self.apps()
        self.smtp()
        self.acme()
        self.backup()
        self.s3()
        self.secrets(enabled)

    def apps(self) -> dict[str, dict[str, Any]]:
        raw = self.mapping("fedictl_apps", self.vars.get("fedictl_apps"))
        known_apps = apps.names()
        enabled: dict[str, dict[str, Any]] = {}
        for name in sorted(raw, key=str):
            if name not in known_apps:
                self.add(
                    f"fedictl_apps.{segment(name)}",
                    "an unknown app",
                    f"remove it; fedictl deploys only {', '.join(known_apps)}",
                )
                continue
            app = apps.get(name)
            key = f"fedictl_apps.{name}"
            known = ["enabled", *app.fields, *_OPTIONAL_APP_KEYS, *app.optional_text]
            settings = self.mapping(key, raw[name], known)
            flag = settings.get("enabled", False)
            if not isinstance(flag, bool):
                self.add(f"{key}.enabled", describe(flag), "write true or false")
            elif flag:
                enabled[name] = settings
        if raw and not enabled:
            self.add(
                "fedictl_apps",
                "no enabled app",
                f"set enabled: true for at least one of {', '.join(known_apps)}",
            )
        for name, settings in enabled.items():
            self.app(apps.get(name), settings)
        self.collisions(enabled)
        return enabled

    def app(self, app: App, s: dict[str, Any]) -> None:
        key = f"fedictl_apps.{app.name}"
        for field in app.domains:
            value = s.get(field)
            if field == app.web_domain and value in (None, ""):
                continue
            self.text(
                f"{key}.{field}",
                value,
                is_domain,
                "a lowercase domain name like social.example.org",
            )
        if app.web_domain and s.get(app.web_domain) and s.get(app.web_domain) == s.get(app.domain):
            self.add(
                f"{key}.{app.web_domain}",
                f"the same domain as {app.domain}",
                f"leave {app.web_domain} empty when the web UI is served on {app.domain}",
            )
        self.text(
            f"{key}.version",
            s.get("version"),
            lambda x: isinstance(x, str) and re.fullmatch(app.version_pattern, x) is not None,
            f"a release tag like {app.settings().version} (not a branch name, no leading zeros)",
        )
        for field in ("db_name", "db_user"):
            self.text(
                f"{key}.{field}",
                s.get(field),
                is_pg_name,
                "a PostgreSQL name: lowercase letters, digits and '_', not one PostgreSQL "
                "reserves (postgres, template0, template1, public, pg_..., SQL key words "
                "such as user)",
            )
        for field in app.redis:
            self.integer(f"{key}.{field}", s.get(field), 0, REDIS_DBS - 1)
        for field in app.ports:
            self.integer(f"{key}.{field}", s.get(field), 1024, 65535)
        for field, (low, high) in _OPTIONAL_APP_KEYS.items():
            if field in s:
                self.integer(f"{key}.{field}", s[field], low, high)
        for field, setting in app.optional_text.items():
            if field in s:
                self.text(f"{key}.{field}", s[field], setting.check, setting.what)
        for rule in app.rules:
            if (finding := rule.problem(s)) is not None:
                self.add(f"{key}.{rule.key}", *finding)

    def collisions(self, enabled: dict[str, dict[str, Any]]) -> None:
        """Domains, DB names/users and Redis DBs are shared namespaces; ports are per host."""
        spaces: dict[str, tuple[Callable[[App], tuple[str, ...]], str]] = {
            "domain": (lambda a: a.domains, "give each app its own domain"),
            "database name": (lambda a: ("db_name",), "give each app its own db_name"),
            "database user": (lambda a: ("db_user",), "give each app its own db_user"),
            "Redis database": (
                lambda a: a.redis,
                f"give each app its own numbers (0..{REDIS_DBS - 1})",
            ),
        }
        for what, (fields, fix) in spaces.items():
            seen: dict[object, str] = {}
            for name in sorted(enabled):
                for field in fields(apps.get(name)):
                    value = enabled[name].get(field)
                    if value in (None, "") or isinstance(value, (dict, list, bool)):
                        continue
                    key = f"fedictl_apps.{name}.{field}"
                    if value in seen:
                        self.add(key, f"{what} {describe(value)} also used by {seen[value]}", fix)
                    else:
                        seen[value] = f"{name}.{field}"
        if self.host is not None:
            self.ports(enabled)

    def ports(self, enabled: dict[str, dict[str, Any]]) -> None:
        host_groups = {g for g, members in self.inv.groups.items() if self.host in members}
        taken: dict[int, str] = {80: "the reverse proxy (HTTP)", 443: "the reverse proxy (HTTPS)"}
        if "database" in host_groups:
            taken[5432] = "PostgreSQL"
        if "cache" in host_groups:
            taken[6379] = "Redis"
        ssh = _int(self.vars.get("ansible_port"))
        if ssh is not None:
            taken[ssh] = "SSH (ansible_port)"
        for name in sorted(enabled):
            if name not in host_groups:
                continue
            for field in apps.get(name).ports:
                port = _int(enabled[name].get(field))
                if port is None:
                    continue
                key = f"fedictl_apps.{name}.{field}"
                if port in taken:
                    self.add(
                        key,
                        f"port {port} already used on host {self.host} by {taken[port]}",
                        "choose a free port from 1024 to 65535",
                    )
                else:
                    taken[port] = f"{name}.{field}"

    def smtp(self) -> None:
        s = self.mapping("fedictl_smtp", self.vars.get("fedictl_smtp"), _SMTP_KEYS)
        if not s:
            return
        self.text(
            "fedictl_smtp.host",
            s.get("host"),
            _is_address,
            "the SMTP server's host name or IP address",
        )
        self.integer("fedictl_smtp.port", s.get("port"), 1, 65535)
        self.text(
            "fedictl_smtp.from_address",
            s.get("from_address"),
            is_email,
            "the sender address, e.g. notifications@example.org",
        )
        self.text(
            "fedictl_smtp.tls",
            s.get("tls"),
            lambda x: x in SMTP_TLS,
            f"one of {', '.join(SMTP_TLS)}",
        )
        user = s.get("user")
        if user is not None and not isinstance(user, str):
            self.add("fedictl_smtp.user", describe(user), "write the SMTP login as text, or ''")
            return
        password = self.vars.get("vault_smtp_password")
        if user and secrets.is_missing(password):
            self.add(
                "vault_smtp_password",
                "nothing",
                "set the SMTP password for fedictl_smtp.user with `ansible-vault edit`",
            )
        elif not user and not secrets.is_missing(password):
            self.add(
                "fedictl_smtp.user",
                "nothing while vault_smtp_password is set",
                "set the SMTP login, or empty vault_smtp_password for an open relay",
            )

    def acme(self) -> None:
        a = self.mapping("fedictl_acme", self.vars.get("fedictl_acme"), _ACME_KEYS)
        if not a:
            return
        self.text(
            "fedictl_acme.email",
            a.get("email"),
            is_email,
            "the e-mail address for certificate expiry notices",
        )
        self.text(
            "fedictl_acme.directory_url",
            a.get("directory_url"),
            lambda x: isinstance(x, str) and bool(_URL_RE.fullmatch(x)),
            "an https:// ACME directory URL (default Let's Encrypt production)",
        )
        if "ca_file" in a:
            self.text(
                "fedictl_acme.ca_file",
                a.get("ca_file"),
                _is_pem_file,
                "the path of a PEM file with the private ACME CA's certificate (lab CAs only)",
            )

    def backup(self) -> None:
        b = self.mapping(
            "fedictl_backup", self.vars.get("fedictl_backup"), ("repository", "retention")
        )
        if not b:
            return
        self.text(
            "fedictl_backup.repository",
            b.get("repository"),
            lambda x: isinstance(x, str) and bool(_RESTIC_RE.fullmatch(x)),
            "a restic repository, e.g. sftp:user@host:/srv/restic/org or s3:https://...",
        )
        r = self.mapping(
            "fedictl_backup.retention", b.get("retention"), ("daily", "weekly", "monthly")
        )
        counts = [
            self.integer(f"fedictl_backup.retention.{k}", r.get(k), 0, 10000)
            for k in ("daily", "weekly", "monthly")
            if r
        ]
        if r and all(c == 0 for c in counts):
            self.add(
                "fedictl_backup.retention",
                "0 snapshots kept",
                "keep at least one daily, weekly or monthly snapshot",
            )

    def s3(self) -> None:
        s = self.mapping("fedictl_s3", self.vars.get("fedictl_s3"), _S3_KEYS)
        enabled = s.get("enabled", False)
        if not isinstance(enabled, bool):
            self.add("fedictl_s3.enabled", describe(enabled), "write true or false")
            return
        if not enabled:
            return
        self.text(
            "fedictl_s3.endpoint",
            s.get("endpoint"),
            lambda x: isinstance(x, str) and bool(_URL_RE.fullmatch(x)),
            "the provider's https:// endpoint URL",
        )
        self.text(
            "fedictl_s3.bucket",
            s.get("bucket"),
            lambda x: isinstance(x, str) and bool(_BUCKET_RE.fullmatch(x)),
            "a bucket name (3..63 lowercase letters, digits, '.' and '-')",
        )
        self.text(
            "fedictl_s3.region",
            s.get("region"),
            lambda x: isinstance(x, str) and bool(_REGION_RE.fullmatch(x)),
            "the region, e.g. us-east-1",
        )
        self.text(
            "fedictl_s3.access_key_id",
            s.get("access_key_id"),
            lambda x: isinstance(x, str) and bool(x.strip()),
            "the access key id",
        )
        self.s3_public_host(s)
        if secrets.is_missing(self.vars.get("vault_s3_secret_access_key")):
            self.add(
                "vault_s3_secret_access_key",
                "nothing",
                "set the S3 secret access key with `ansible-vault edit`",
            )

    def s3_public_host(self, s: dict[str, Any]) -> None:
        """Where the world fetches media. The apps build media URLs on AWS's host unless told
        another (Mastodon's paperclip.rb: S3_ALIAS_HOST, else S3_HOSTNAME, else
        s3-<region>.amazonaws.com), so a provider that is not AWS needs a public host: a CDN, or
        fedictl's proxy (``proxy``)."""
        public_host = s.get("public_host", "")
        proxy = s.get("proxy", False)
        if not isinstance(proxy, bool):
            self.add("fedictl_s3.proxy", describe(proxy), "write true or false")
            proxy = False
        permission = s.get("permission", "")
        if permission not in _S3_PERMISSIONS:
            self.add(
                "fedictl_s3.permission",
                describe(permission),
                "write '' (the apps' default, public-read), private or public-read",
            )
        if public_host != "" and not (isinstance(public_host, str) and is_domain(public_host)):
            self.add("fedictl_s3.public_host", describe(public_host), "set it to a domain name")
            return
        endpoint = s.get("endpoint")
        host = urlsplit(endpoint).hostname if isinstance(endpoint, str) else None
        on_aws = host is not None and (host == "amazonaws.com" or host.endswith(".amazonaws.com"))
        if not public_host and (proxy or (host is not None and not on_aws)):
            self.add(
                "fedictl_s3.public_host",
                "nothing" if proxy else f"nothing, with the endpoint {host}, which is not AWS",
                "set the host media are served from, e.g. media.example.org: a CDN in front of the "
                "bucket, or this server with fedictl_s3.proxy: true (else every media URL points "
                "at s3-<region>.amazonaws.com)",
            )

    def secrets(self, enabled: dict[str, dict[str, Any]]) -> None:
        for spec in secrets.required(set(enabled)):
            value = self.vars.get(spec.key)
            if secrets.is_missing(value):
                self.add(spec.key, "nothing", _FIX_SECRET)
            elif not isinstance(value, str):
                self.add(spec.key, f"a {type(value).__name__}", f"make it {spec.format}")
            elif (wrong := spec.check(value)) is not None:
                self.add(
                    spec.key,
                    wrong,
                    f"make it {spec.format}; changing a deployed one "
                    "loses data, so restore the old value if it was overwritten",
                )
        for pair in secrets.pairs(set(enabled)):
            first, second = (self.vars.get(key) for key in pair.keys)
            if isinstance(first, str) and isinstance(second, str) and first and second:
                mismatch = pair.problem(first, second)
                if mismatch:
                    self.add(pair.second, mismatch, "restore the pair that was generated together")

    # --- hosts --------------------------------------------------------------------------------

    def connection(self) -> None:
        hosts_file = self.inv.file(HOSTS)
        host = self.host
        reserved = {*ANSIBLE_NAMES, "fediverse", *groups(), *self.inv.groups}
        if host in reserved:
            self.add(
                f"hosts.{host}",
                "a name Ansible reserves (localhost, all, ungrouped) or gives a group",
                "name the server something else, e.g. its short host name (the address stays "
                "in ansible_host); tasks meant for the control machine would run there",
                hosts_file,
            )
        elif not _HOSTNAME_RE.fullmatch(str(host)):
            self.add(
                f"hosts.{host}",
                "an unusable host name",
                "use letters, digits, '.', '-' and '_'",
                hosts_file,
            )
        for var, ok, what in (
            ("ansible_host", _is_address, "the server's IP address or DNS name"),
            (
                "ansible_user",
                lambda x: isinstance(x, str) and bool(_USER_RE.fullmatch(x)),
                "the SSH login user, e.g. root or debian",
            ),
        ):
            value = self.vars.get(var)
            if not ok(value):
                self.add(
                    f"hosts.{host}.{var}",
                    describe(value),
                    f"set {var} to {what}",
                    self.inv.source(var, host),
                )
        private = self.vars.get("fedictl_private_address")
        if private is not None and not _is_ip(private):
            self.add(
                f"hosts.{host}.fedictl_private_address",
                describe(private),
                "set it to this host's IP address on the private network, or remove it",
                self.inv.source("fedictl_private_address", host),
            )
        port = self.vars.get("ansible_port", 22)
        if _int(port) is None or not 1 <= port <= 65535:
            self.add(
                f"hosts.{host}.ansible_port",
                describe(port),
                "set ansible_port to the SSH port (1..65535)",
                self.inv.source("ansible_port", host),
            )


def _groups(inv: Inventory, enabled: Iterable[str]) -> list[Problem]:
    problems: list[Problem] = []
    hosts_file = inv.file(HOSTS)
    if "fediverse" not in inv.groups:
        problems.append(
            Problem(
                hosts_file,
                "all.children.fediverse",
                "nothing",
                "define the fediverse group with its children (docs/inventory.md)",
            )
        )
    known_apps = apps.names()
    needed = [g for g in groups() if g not in known_apps] + [a for a in known_apps if a in enabled]
    for group in needed:
        if not inv.groups.get(group):
            what = "the app" if group in known_apps else "this role"
            problems.append(
                Problem(
                    hosts_file,
                    f"all.children.fediverse.children.{group}",
                    "no hosts",
                    f"put a host in group {group} to run {what}",
                )
            )
    return problems


def check(inv: Inventory) -> list[Problem]:
    """Every problem in ``inv``; an empty list means valid."""
    if inv.problems:
        return list(inv.problems)
    problems: list[Problem] = []
    hosts = inv.groups.get("fediverse") or sorted(inv.hostvars)
    views: list[tuple[str | None, dict[str, Any]]] = [(h, inv.hostvars.get(h, {})) for h in hosts]
    if not views:
        views = [(None, inv.all_vars)]
    enabled: set[str] = set()
    for host, variables in views:
        checker = _Checker(inv, host, variables)
        checker.settings()
        enabled.update(apps.enabled(variables.get("fedictl_apps")))
        if host is not None:
            checker.connection()
        problems += checker.problems
    problems += _groups(inv, enabled)
    return list(dict.fromkeys(problems))


def load_and_check(path: Path, password_file: Path | None) -> tuple[Inventory, list[Problem]]:
    """Load ``path`` as Ansible will (vault included) and check it. Never raises on bad data."""
    vault_file = path / VAULT
    try:
        secret = vault.load_secret(password_file_for(path, password_file))
    except FedictlError as exc:
        inv = Inventory(path=path)
        if not vault_file.exists():
            secret = None
        else:
            return inv, [
                Problem(
                    inv.file(VAULT),
                    "(whole file)",
                    f"a vault that cannot be opened ({' '.join(str(exc).split())})",
                    "pass --vault-password-file naming the file `fedictl init` wrote",
                )
            ]
    inv = load(path, secret)
    return inv, check(inv)
