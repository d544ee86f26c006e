"""Mastodon, as fedictl's CLI knows it.

Secrets follow the upstream facts (``shared/upstream``):

- ``SECRET_KEY_BASE``: ``SecureRandom.hex(64)``, 128 lowercase hex characters.
- ``ACTIVE_RECORD_ENCRYPTION_*`` (3 keys): ``SecureRandom.alphanumeric(32)``.
- The VAPID pair (gem ``webpush``): P-256; the private key is the 32-byte scalar and the public key
  the 65-byte uncompressed point, both URL-safe base64 *with* ``=`` padding (44 and 88
  characters). ``OTP_SECRET`` is not generated: Mastodon 4.4 removed it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fedictl import names
from fedictl.apps import ApiEndpoint, App, Question, Rule, TextEndpoint, TextSetting
from fedictl.releases import Advisory, Line, Release
from fedictl.secret_formats import (
    Check,
    SecretPair,
    SecretSpec,
    alphanumeric,
    describe,
    hex_token,
    matching,
    password_spec,
)

NAME = "mastodon"


@dataclass
class Settings:
    local_domain: str = ""  # the handle domain: can never change after the first deploy
    web_domain: str = ""  # optional: where the web UI is served, if not local_domain
    version: str = "v4.7.6"
    db_name: str = "mastodon_production"
    db_user: str = "mastodon"
    redis_db: int = 1
    web_port: int = 3000
    streaming_port: int = 4000


# --- the VAPID pair ------------------------------------------------------------------------------


def vapid_keypair() -> tuple[str, str]:
    """(private, public) as Mastodon's ``webpush:generate_vapid_key`` writes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(private).decode(), base64.urlsafe_b64encode(public).decode()


def _urlsafe_b64decode(value: str) -> bytes:
    """Decode as the webpush gem does: missing ``=`` padding is tolerated."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value):
        raise ValueError("not URL-safe base64")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def vapid_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """Load a VAPID private key; ValueError says why it is not a P-256 scalar."""
    raw = _urlsafe_b64decode(value)
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes, not 32")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def vapid_public_key(value: str) -> ec.EllipticCurvePublicKey:
    raw = _urlsafe_b64decode(value)
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError(f"decodes to {len(raw)} bytes, not a 65-byte uncompressed point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def _loads(load: Callable[[str], object], what: str) -> Check:
    """A check that ``load`` accepts the value; ``what`` names the key."""

    def check(value: str) -> str | None:
        try:
            load(value)
        except (ValueError, binascii.Error) as exc:
            return f"{describe(value)}, not a P-256 {what} ({exc})"
        return None

    return check


def _vapid_belong(private: str, public: str) -> bool:
    try:
        derived = vapid_private_key(private).public_key()
        given = vapid_public_key(public)
    except (ValueError, binascii.Error):
        return True  # each key's own check reports the format
    return derived.public_numbers() == given.public_numbers()


VAPID = SecretPair(
    "vault_mastodon_vapid_private_key",
    "vault_mastodon_vapid_public_key",
    vapid_keypair,
    _vapid_belong,
)


def vapid_pair_problem(private: str, public: str) -> str | None:
    """None if the public key belongs to the private key."""
    return VAPID.problem(private, public)


# --- secrets -------------------------------------------------------------------------------------

_AR = "32 characters from [A-Za-z0-9] (SecureRandom.alphanumeric(32))"
_ALNUM32 = matching(r"[A-Za-z0-9]{32}", "32 characters from [A-Za-z0-9]")


def _active_record(name: str) -> SecretSpec:
    key = f"vault_mastodon_active_record_encryption_{name}"
    return SecretSpec(key, NAME, lambda: alphanumeric(32), _ALNUM32, _AR)


# The VAPID pair is generated together (``VAPID``); its generate functions are unused.
SECRETS = (
    SecretSpec(
        "vault_mastodon_secret_key_base",
        NAME,
        hex_token(64),
        matching(r"[0-9a-f]{128}", "128 lowercase hex characters"),
        "128 lowercase hex characters (SecureRandom.hex(64))",
    ),
    _active_record("deterministic_key"),
    _active_record("key_derivation_salt"),
    _active_record("primary_key"),
    SecretSpec(
        VAPID.first,
        NAME,
        lambda: vapid_keypair()[0],
        _loads(vapid_private_key, "private key"),
        "URL-safe base64 of a 32-byte P-256 private key (44 characters)",
    ),
    SecretSpec(
        VAPID.second,
        NAME,
        lambda: vapid_keypair()[1],
        _loads(vapid_public_key, "public key"),
        "URL-safe base64 of a 65-byte P-256 point (88 characters)",
    ),
    password_spec("vault_mastodon_db_password", NAME),
    password_spec("vault_mastodon_admin_password", NAME),
)

# --- optional settings (read by playbooks/vars/mastodon.yml) -------------------------------------

_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_USERNAME_RE = re.compile(r"[a-z0-9_]{1,30}")

OPTIONAL_TEXT = {
    "release_archive": TextSetting(
        lambda x: isinstance(x, str) and not x.startswith("http://"),
        "a release archive's path on this machine or an https:// URL (docs/mastodon.md)",
    ),
    "release_archive_checksum": TextSetting(
        lambda x: x == "" or (isinstance(x, str) and bool(_SHA256_RE.fullmatch(x))),
        "sha256:<64 lowercase hex digits>, the archive's checksum",
    ),
    "ruby_source": TextSetting(lambda x: x in ("rbenv", "debian"), "rbenv or debian"),
    "nodejs_source": TextSetting(lambda x: x in ("nodesource", "debian"), "nodesource or debian"),
    "owner_username": TextSetting(
        lambda x: isinstance(x, str) and bool(_USERNAME_RE.fullmatch(x)),
        "1-30 lowercase letters, digits or '_' (the owner account's username)",
    ),
    # EXTRA_MEDIA_HOSTS: a list, in the Content-Security-Policy of every page.
    "extra_media_hosts": TextSetting(
        lambda x: isinstance(x, list) and all(isinstance(h, str) and names.is_domain(h) for h in x),
        "a list of domain names media may load from, e.g. [cdn.example.org]",
    ),
}


def _unverified_archive(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    archive = settings.get("release_archive", "")
    https = isinstance(archive, str) and archive.startswith("https://")
    if not https or settings.get("release_archive_checksum"):
        return None
    return (
        "nothing, for an https:// archive",
        "set it to sha256:<hex> of the archive (sha256sum prints it)",
    )


# --- the release lines fedictl knows ------------------------------------------------------------
# From upstream's release notes and tags as of 2026-12-07 (docs/mastodon.md). Severity: as upstream
# rated the advisory where its notes say; "high" where only "security release" is recorded.
_GHSA_471 = (
    Advisory("GHSA-vx32-x96w-qq65", "high"),
    Advisory("GHSA-vgm8-frgh-rh2v", "high"),
    Advisory("GHSA-62j4-hvj7-px3f", "high"),
)
LINES = (
    Line(
        "4.5",
        {"node": ">= 20", "postgresql": ">= 14", "redis": ">= 6.2", "ruby": ">= 3.2, < 3.5"},
        (
            Release("v4.5.13", ""),
            Release("v4.5.14", ""),
            Release("v4.5.15", "2026-08-06"),
        ),
    ),
    Line(
        "4.6",
        {"node": ">= 22", "postgresql": ">= 14", "redis": ">= 6.2", "ruby": ">= 3.3, < 4.1"},
        (
            Release("v4.6.0", "2026-06-17"),
            Release("v4.6.1", "2026-06-24"),
            Release("v4.6.2", "2026-06-25"),
            Release("v4.6.3", "2026-07-03"),
            Release("v4.6.4", "2026-07-27", note="security release (advisory ids not recorded)"),
            Release("v4.6.5", "2026-08-06", commit="1440d55b139e39ec722c2a3db7f60b66cd889048"),
            Release("v4.6.6", "2026-08-13"),
            Release("v4.6.7", "", _GHSA_471, "the advisories 4.7.1 fixes"),
            Release("v4.6.8", ""),
            Release("v4.6.9", "2026-10-01"),
        ),
        upgrade_note="libvips >= 8.13 (ImageMagick removed), ffmpeg >= 5.1, Node 22",
    ),
    Line(
        "4.7",
        {"node": ">= 22", "postgresql": ">= 14", "redis": ">= 7.0", "ruby": ">= 3.3, < 4.1"},
        (
            Release("v4.7.0", "2026-08-20", note="never stop here: 4.7.1 fixes its migrations"),
            Release("v4.7.1", "", _GHSA_471),
            Release("v4.7.2", "2026-09-15"),
            Release("v4.7.3", "2026-10-01"),
            Release("v4.7.4", "2026-10-29", (Advisory("GHSA-288h-6j8h-6x5j", "high"),)),
            Release("v4.7.5", ""),
            Release(
                "v4.7.6",
                "2026-11-19",
                (
                    Advisory(
                        "v4.7.6-ruby-puma-rails",
                        "critical",
                        "https://github.com/mastodon/mastodon/releases/tag/v4.7.6",
                    ),
                ),
                "Ruby 4.0.10, 3.4.13 or 3.3.14 or newer (critical issues in older Rubies)",
            ),
        ),
        upgrade_note=(
            "unusually long migrations (key pairs move to an encrypted table: keep the three "
            "ACTIVE_RECORD_ENCRYPTION_* keys), recompiled assets, a streaming restart; Redis >= 7.0"
        ),
    ),
)

APP = App(
    name=NAME,
    settings=Settings,
    software="mastodon",
    health=TextEndpoint("/health", "OK"),
    text_checks={"streaming": TextEndpoint("/api/v1/streaming/health", "OK")},
    api=ApiEndpoint("/api/v2/instance", version_key="version", domain_key="domain"),
    # The owner account the role creates (owner_username, default admin, as
    # playbooks/vars/mastodon.yml maps it).
    account="admin",
    account_setting="owner_username",
    domain="local_domain",
    web_domain="web_domain",
    ports=("web_port", "streaming_port"),
    redis=("redis_db",),
    optional_text=OPTIONAL_TEXT,
    rules=(Rule("release_archive_checksum", _unverified_archive),),
    secrets=SECRETS,
    secret_pairs=(VAPID,),
    upgradable=True,
    lines=LINES,
    # roles/mastodon/vars/main.yml's __mastodon_version_pattern (a test keeps them equal).
    version_pattern=r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$",
    checks=("streaming", "sidekiq"),
    # One streaming process on fedictl_apps.mastodon.streaming_port (playbooks/vars/mastodon.yml).
    units=(
        "mastodon-web.service",
        "mastodon-sidekiq.service",
        "mastodon-streaming@{streaming_port}.service",
    ),
    disk_paths=("/", "/home/mastodon"),
    questions=(
        Question(
            "local_domain",
            "--mastodon-domain",
            "Mastodon LOCAL_DOMAIN (handle domain; can never change)",
        ),
        Question(
            "web_domain",
            "--mastodon-web-domain",
            "Mastodon WEB_DOMAIN (empty: same as LOCAL_DOMAIN)",
            "",
        ),
    ),
)
