"""Pixelfed, as fedictl's CLI knows it.

``APP_KEY`` follows upstream (Laravel): ``base64:`` + standard base64 of 32 random bytes
(AES-256-CBC), generated once and never regenerated. The passwords have fedictl's password format
(no quote or line break: the database's reaches ``.env`` single-quoted, roles/pixelfed); the
admin's reaches ``user:create`` on standard input and is at most 72 bytes (bcrypt's limit).

The release lines are upstream's as the December 2026 facts give them (docs/pixelfed.md): 0.12
(Laravel 11/12) and 0.14 (Laravel 13, PHP >= 8.3), pinned to v0.14.4, the newest release found.
The units follow roles/pixelfed: Debian 13's php8.4-fpm with Pixelfed's own pool, Horizon, and the
scheduler's timer.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from fedictl.apps import ApiEndpoint, App, Question, TextEndpoint, TextSetting
from fedictl.releases import Line, Release
from fedictl.secret_formats import (
    SecretSpec,
    check_password,
    describe,
    password,
    password_spec,
)

NAME = "pixelfed"


@dataclass
class Settings:
    domain: str = ""  # APP_DOMAIN: federation breaks if it changes after the first deploy
    version: str = "v0.14.4"
    db_name: str = "pixelfed"
    db_user: str = "pixelfed"
    # Pixelfed's Redis databases: the default connection (queues, Horizon, sessions), one kept
    # for sessions, and the cache (roles/pixelfed: pixelfed_redis_db_cache), apart from other apps'.
    redis_db: int = 3
    redis_db_session: int = 4
    redis_db_pulse: int = 5


def pixelfed_app_key() -> str:
    return "base64:" + base64.b64encode(secrets.token_bytes(32)).decode()


def _check_app_key(value: str) -> str | None:
    if not value.startswith("base64:"):
        return f"{describe(value)} without the 'base64:' prefix"
    try:
        raw = base64.b64decode(value[len("base64:") :], validate=True)
    except binascii.Error:
        return f"{describe(value)}, not base64 after 'base64:'"
    return None if len(raw) == 32 else f"a key of {len(raw)} bytes, not 32"


def _check_admin_password(value: str) -> str | None:
    # fedictl's password format, and at most 72 bytes (bcrypt's limit).
    return check_password(value) or (
        None if len(value.encode()) <= 72 else f"{describe(value)}, longer than 72 bytes"
    )


SECRETS = (
    SecretSpec(
        "vault_pixelfed_app_key",
        NAME,
        pixelfed_app_key,
        _check_app_key,
        "'base64:' + base64 of 32 random bytes",
    ),
    password_spec("vault_pixelfed_db_password", NAME),
    SecretSpec(
        "vault_pixelfed_admin_password",
        NAME,
        password,
        _check_admin_password,
        "16..72 characters from [A-Za-z0-9._~-]",
    ),
)

# --- optional settings (read by playbooks/vars/pixelfed.yml) -------------------------------------

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def _local_path(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not re.match(r"[a-z]+://", value)


def _count(low: int, high: int) -> TextSetting:
    return TextSetting(
        lambda x: isinstance(x, int) and not isinstance(x, bool) and low <= x <= high,
        f"a whole number from {low} to {high}",
    )


OPTIONAL_TEXT = {
    "release_archive": TextSetting(
        lambda x: x == "" or _local_path(x),
        "the path on this machine of the tag's source tarball (docs/pixelfed.md)",
    ),
    "release_sha256": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_SHA256_RE.fullmatch(x))),
        "the 64 lowercase hex digits of the tag tarball's sha256 (sha256sum prints it)",
    ),
    "release_commit": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_COMMIT_RE.fullmatch(x))),
        "the tag's 40 lowercase hex digit commit (gzip -dc TARBALL | git get-tar-commit-id)",
    ),
    "instance_name": TextSetting(
        lambda x: isinstance(x, str) and bool(x.strip()) and x.isprintable() and "'" not in x,
        "the instance's name, one line without a single quote",
    ),
    "admin_username": TextSetting(
        lambda x: isinstance(x, str) and bool(re.fullmatch(r"[A-Za-z0-9_]{1,30}", x)),
        "1 to 30 letters, digits or _",
    ),
    # One limit for Pixelfed (MAX_PHOTO_SIZE), PHP and nginx, in KiB.
    "max_upload_kb": _count(1024, 2097152),
    "open_registration": TextSetting(lambda x: isinstance(x, bool), "true or false"),
    "enable_config_cache": TextSetting(
        lambda x: isinstance(x, bool),
        "true (the admin dashboard's settings override the inventory) or false",
    ),
}

# --- the release lines fedictl knows ------------------------------------------------------------
# From the December 2026 upstream facts (docs/pixelfed.md). Commits are the tags' short ids where
# they were verified. CVE-2026-93960 (instancePeers without authentication) lists 0.12.0 up to at
# least 0.12.11 as affected, and no 0.12 release is known to fix it: a release's ``fixes`` would
# send `fedictl check` users to that release, so the advisory is in the line's note instead (the
# pin is on the 0.14 line), and `check` cannot flag a 0.12 instance for it yet.
_NOTES = "https://github.com/pixelfed/pixelfed/releases/tag/"

LINES = (
    Line(
        "0.12",
        {"php": ">= 8.2", "postgresql": ">= 12", "redis": ">= 6"},
        (
            Release("v0.12.6", "2025-09-03", commit="f5f7b3e"),
            Release("v0.12.7", ""),
            Release(
                "v0.12.8",
                "",
                note="TRUST_PROXIES no longer defaults to '*': set the proxy's address",
            ),
            Release("v0.12.9", "2026-08-24"),
            Release("v0.12.10", ""),
            Release("v0.12.11", ""),
            Release("v0.12.12", "", note="CVE-2026-93960: fix on this line unverified"),
        ),
        upgrade_note=(
            "CVE-2026-93960 affects 0.12.0 to at least 0.12.11: move to the 0.14 line; "
            "from 0.12.8, "
            "TRUST_PROXIES must name the proxy (the role sets 127.0.0.1)"
        ),
    ),
    Line(
        "0.14",
        {"php": ">= 8.3", "postgresql": ">= 12", "redis": ">= 6"},
        (
            Release("v0.14.0", "", note="Laravel 13"),
            Release("v0.14.1", ""),
            Release("v0.14.2", ""),
            Release("v0.14.3", ""),
            Release("v0.14.4", "2026-09-30"),
        ),
        upgrade_note=(
            "Laravel 13 (0.13 and later): PHP >= 8.3 (the role checks the tag's composer.lock); "
            "migrations run before the switch, in maintenance mode"
        ),
    ),
)

APP = App(
    name=NAME,
    settings=Settings,
    software="pixelfed",
    health=TextEndpoint("/api/service/health-check", "OK"),
    api=ApiEndpoint("/api/nodeinfo/2.0.json"),  # a NodeInfo document
    account="admin",
    account_setting="admin_username",
    redis=("redis_db", "redis_db_session", "redis_db_pulse"),
    optional_text=OPTIONAL_TEXT,
    secrets=SECRETS,
    lines=LINES,
    # `fedictl upgrade pixelfed` needs a pixelfed play in playbooks/upgrade.yml first (the role's
    # upgrade path runs from `fedictl deploy` when the pin moves); then this becomes True.
    upgradable=False,
    checksum_setting="release_sha256",
    checksum_prefixed=False,
    # roles/pixelfed/vars/main.yml's __pixelfed_version_pattern (a test keeps them equal).
    version_pattern=r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$",
    # The services `fedictl check` watches (roles/pixelfed also runs pixelfed-scheduler.timer;
    # adding it here changes the units check's expected output in tests/test_check_host.py).
    units=("php8.4-fpm.service", "pixelfed-horizon.service"),
    disk_paths=("/", "/var/www/pixelfed"),
    questions=(Question("domain", "--pixelfed-domain", "Pixelfed domain"),),
)
