"""PeerTube, as fedictl's CLI knows it.

Secrets follow the upstream facts (``shared/upstream``): ``secrets.peertube`` is
``openssl rand -hex 32``, 64 hex characters; the initial root password must be 8..50 characters
(and at most 72 bytes, bcrypt's limit). It reaches PeerTube's first start through a systemd
EnvironmentFile, single-quoted (roles/peertube), so it may hold no single quote or line break.

The release lines are upstream's release notes as of 2026-12-07 (docs/peertube.md): 8.2 and 8.3,
pinned to v8.3.2, the newest release found.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedictl.apps import ApiEndpoint, App, Question, Rule, TextEndpoint, TextSetting
from fedictl.releases import Advisory, Line, Release
from fedictl.secret_formats import (
    SecretSpec,
    describe,
    hex_token,
    matching,
    password,
    password_spec,
)

NAME = "peertube"


@dataclass
class Settings:
    domain: str = ""  # webserver.hostname: PeerTube does not support changing it later
    version: str = "v8.3.2"
    db_name: str = "peertube_prod"
    db_user: str = "peertube"
    redis_db: int = 2
    port: int = 9000
    storage_dir: str = "/var/www/peertube/storage"  # absolute; files are not moved if it changes


def _check_root_password(value: str) -> str | None:
    if (
        8 <= len(value) <= 50
        and len(value.encode()) <= 72
        and value == value.strip()
        and "'" not in value
        and "\n" not in value
        and "\r" not in value
    ):
        return None
    return (
        f"{describe(value)}, not 8..50 characters (PeerTube's limit) without a single quote, "
        "a line break or surrounding spaces"
    )


SECRETS = (
    SecretSpec(
        "vault_peertube_secret",
        NAME,
        hex_token(32),
        matching(r"[0-9a-f]{64}", "64 lowercase hex characters"),
        "64 lowercase hex characters (openssl rand -hex 32)",
    ),
    SecretSpec(
        "vault_peertube_root_password", NAME, password, _check_root_password, "8..50 characters"
    ),
    password_spec("vault_peertube_db_password", NAME),
)

# --- optional settings (read by playbooks/vars/peertube.yml) -------------------------------------

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT_RE = re.compile(r"[0-9A-Fa-f]{40}")
_URL_RE = re.compile(r"https?://[^/\s]+\S*")


def _local_path(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not re.match(r"[a-z]+://", value)


OPTIONAL_TEXT = {
    "release_archive": TextSetting(
        lambda x: x == "" or _local_path(x),
        "the release zip's path on this machine, its signature beside it as <zip>.asc "
        "(docs/peertube.md)",
    ),
    "release_sha256": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_SHA256_RE.fullmatch(x))),
        "the 64 lowercase hex digits of the release zip's sha256 (sha256sum prints it)",
    ),
    "release_signing_key": TextSetting(
        lambda x: x == "" or _local_path(x),
        "the path on this machine of the armored key that signs the releases",
    ),
    "release_signing_key_fingerprint": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_FINGERPRINT_RE.fullmatch(x))),
        "the signing key's 40 hex digit fingerprint ('' for upstream's maintainer key)",
    ),
    "npm_registry": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_URL_RE.fullmatch(x))),
        "an http(s) URL of an npm registry, or '' for npm's default",
    ),
    "nodejs_source": TextSetting(lambda x: x in ("nodesource", "debian"), "nodesource or debian"),
    "instance_name": TextSetting(
        lambda x: isinstance(x, str) and bool(x.strip()) and x.isprintable(),
        "the instance's name, one line",
    ),
    "transcoding_threads": TextSetting(
        lambda x: isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 256,
        "ffmpeg threads per transcoding job, 0 for half the host's cores",
    ),
}


def _storage_not_absolute(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    value = settings.get("storage_dir", Settings.storage_dir)
    if (
        isinstance(value, str)
        and value.startswith("/")
        and value != "/"
        and not value.endswith("/")
        and "/../" not in f"{value}/"
        and not any(c.isspace() for c in value)
    ):
        return None
    return (
        repr(value),
        "set it to an absolute directory without a trailing slash, e.g. /var/www/peertube/storage",
    )


# --- the release lines fedictl knows ------------------------------------------------------------
# From upstream's release notes as of 2026-12-07 (docs/peertube.md). Commits are the tags' short
# ids as upstream's release pages show them. Severity: as upstream rated the advisory; a release
# whose advisories upstream had not disclosed carries a pseudo-id naming it, rated as its notes say
# ("medium to high" -> high, "medium to critical" -> critical; unrated -> medium).
_NOTES = "https://github.com/Chocobozzz/PeerTube/releases/tag/"


def _undisclosed(tag: str, severity: str) -> Advisory:
    return Advisory(f"{tag}-security", severity, _NOTES + tag)


LINES = (
    Line(
        "8.2",
        {"node": ">= 22.12, < 25", "postgresql": ">= 10", "redis": ">= 6.2", "pnpm": ">= 10"},
        (
            Release("v8.2.0", "2026-05-27", commit="449f01e"),
            Release("v8.2.1", "", (_undisclosed("v8.2.1", "medium"),), "XSS fix"),
            Release("v8.2.2", "2026-07-02", (_undisclosed("v8.2.2", "high"),), commit="296e638"),
            Release(
                "v8.2.3",
                "2026-07-20",
                (_undisclosed("v8.2.3", "medium"),),
                "security hardening (P2P segments, embeds, token redaction)",
                commit="7fd40b9",
            ),
            Release(
                "v8.2.4",
                "2026-08-04",
                (Advisory("GHSA-g9p4-f7h8-hc86", "critical"), _undisclosed("v8.2.4", "high")),
                "CVE-2026-73090: cross-origin remote video takeover (CVSS 9.3)",
            ),
        ),
        upgrade_note="Node.js >= 22.12 (20 dropped); nginx's download I/O fix",
    ),
    Line(
        "8.3",
        {"node": ">= 22.12, < 25", "postgresql": ">= 14", "redis": ">= 6.2", "pnpm": ">= 10"},
        (
            Release("v8.3.0", "", note="long migrations at start, then peertube-8.3.js"),
            Release("v8.3.1", "", (_undisclosed("v8.3.1", "critical"),)),
            Release(
                "v8.3.2",
                "2026-10-26",
                (
                    Advisory("GHSA-wq5f-xc86-pv6w", "critical"),
                    Advisory("GHSA-5j4v-77rx-h5qg", "high"),
                ),
                "sharp RCE via crafted SVG; federation impersonation",
                commit="b8055f5",
            ),
        ),
        upgrade_note=(
            "PostgreSQL >= 14; long automatic migrations at start (plan downtime), then the manual "
            "script dist/scripts/migrations/peertube-8.3.js (the role runs it); comment API change"
        ),
    ),
)

APP = App(
    name=NAME,
    upgradable=True,
    checksum_setting="release_sha256",
    checksum_prefixed=False,
    settings=Settings,
    software="peertube",
    health=TextEndpoint("/api/v1/ping", "pong"),
    api=ApiEndpoint("/api/v1/config", version_key="serverVersion"),
    account="root",  # PeerTube always creates root
    ports=("port",),
    redis=("redis_db",),
    optional_text=OPTIONAL_TEXT,
    rules=(Rule("storage_dir", _storage_not_absolute),),
    secrets=SECRETS,
    lines=LINES,
    # roles/peertube/vars/main.yml's __peertube_version_pattern (a test keeps them equal).
    version_pattern=r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$",
    units=("peertube.service",),
    disk_paths=("/", "/var/www/peertube"),
    questions=(Question("domain", "--peertube-domain", "PeerTube domain"),),
)
