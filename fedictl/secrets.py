"""Every secret fedictl generates: its vault key, its exact upstream format, and a format check.

Formats follow the upstream facts (``shared/upstream``):

- Mastodon ``SECRET_KEY_BASE``: ``SecureRandom.hex(64)``, 128 lowercase hex characters.
- Mastodon ``ACTIVE_RECORD_ENCRYPTION_*`` (3 keys): ``SecureRandom.alphanumeric(32)``.
- Mastodon VAPID pair (gem ``webpush``): P-256; the private key is the 32-byte scalar and the
  public key the 65-byte uncompressed point, both URL-safe base64 *with* ``=`` padding (44 and 88
  characters). ``OTP_SECRET`` is not generated: Mastodon 4.4 removed it.
- PeerTube ``secrets.peertube``: ``openssl rand -hex 32``, 64 hex characters. The initial root
  password must be 8..50 characters.
- Pixelfed ``APP_KEY``: ``base64:`` + standard base64 of 32 random bytes (AES-256-CBC).
- Passwords (database users, Redis, restic, admin accounts): 32 characters from ``[A-Za-z0-9]``,
  so they need no quoting in ``.env`` files, YAML or connection URLs.

``ensure`` adds what is missing and never changes a value that is already set: rotating any of
these loses data or logs every user out.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALNUM = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
_PASSWORD_RE = re.compile(r"[A-Za-z0-9._~-]{16,128}")


def alphanumeric(length: int) -> str:
    """Ruby's ``SecureRandom.alphanumeric(length)``."""
    return "".join(secrets.choice(ALNUM) for _ in range(length))


def password() -> str:
    return alphanumeric(PASSWORD_LENGTH)


def vapid_keypair() -> tuple[str, str]:
    """(private, public) as Mastodon's ``webpush:generate_vapid_key`` writes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(private).decode(), base64.urlsafe_b64encode(public).decode()


def pixelfed_app_key() -> str:
    return "base64:" + base64.b64encode(secrets.token_bytes(32)).decode()


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


# --- format checks: each returns None when fine, else what is wrong (never the value itself) ---

Check = Callable[[str], "str | None"]


def _describe(value: str) -> str:
    return f"{len(value)} characters"


def _regex(pattern: str, what: str) -> Check:
    compiled = re.compile(pattern)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else f"{_describe(value)}, not {what}"

    return check


def _check_vapid_private(value: str) -> str | None:
    try:
        vapid_private_key(value)
    except (ValueError, binascii.Error) as exc:
        return f"{_describe(value)}, not a P-256 private key ({exc})"
    return None


def _check_vapid_public(value: str) -> str | None:
    try:
        vapid_public_key(value)
    except (ValueError, binascii.Error) as exc:
        return f"{_describe(value)}, not a P-256 public key ({exc})"
    return None


def _check_app_key(value: str) -> str | None:
    if not value.startswith("base64:"):
        return f"{_describe(value)} without the 'base64:' prefix"
    try:
        raw = base64.b64decode(value[len("base64:") :], validate=True)
    except binascii.Error:
        return f"{_describe(value)}, not base64 after 'base64:'"
    return None if len(raw) == 32 else f"a key of {len(raw)} bytes, not 32"


def _check_password(value: str) -> str | None:
    if _PASSWORD_RE.fullmatch(value):
        return None
    return f"{_describe(value)}, not 16..128 characters from [A-Za-z0-9._~-]"


def _check_peertube_root(value: str) -> str | None:
    if 8 <= len(value) <= 50 and len(value.encode()) <= 72 and not value.isspace():
        return None
    return f"{_describe(value)}, not 8..50 characters (PeerTube's limit)"


def vapid_pair_problem(private: str, public: str) -> str | None:
    """None if the public key belongs to the private key."""
    try:
        derived = vapid_private_key(private).public_key()
        given = vapid_public_key(public)
    except (ValueError, binascii.Error):
        return None  # each key's own check reports the format
    if derived.public_numbers() != given.public_numbers():
        return "a public key that does not belong to vault_mastodon_vapid_private_key"
    return None


@dataclass(frozen=True)
class SecretSpec:
    """One generated secret: vault key, the app that needs it (None: always), format."""

    key: str
    app: str | None
    generate: Callable[[], str]
    check: Check
    format: str


_HEX128 = _regex(r"[0-9a-f]{128}", "128 lowercase hex characters")
_HEX64 = _regex(r"[0-9a-f]{64}", "64 lowercase hex characters")
_ALNUM32 = _regex(r"[A-Za-z0-9]{32}", "32 characters from [A-Za-z0-9]")


def _spec(key: str, app: str | None, gen: Callable[[], str], check: Check, fmt: str) -> SecretSpec:
    return SecretSpec(key, app, gen, check, fmt)


_PW = "a password (16..128 characters from [A-Za-z0-9._~-])"
_AR = "32 characters from [A-Za-z0-9] (SecureRandom.alphanumeric(32))"

# The VAPID pair is generated together (see ``ensure``); its generate functions are unused.
SPECS: tuple[SecretSpec, ...] = (
    _spec(
        "vault_mastodon_secret_key_base",
        "mastodon",
        lambda: secrets.token_hex(64),
        _HEX128,
        "128 lowercase hex characters (SecureRandom.hex(64))",
    ),
    _spec(
        "vault_mastodon_active_record_encryption_deterministic_key",
        "mastodon",
        lambda: alphanumeric(32),
        _ALNUM32,
        _AR,
    ),
    _spec(
        "vault_mastodon_active_record_encryption_key_derivation_salt",
        "mastodon",
        lambda: alphanumeric(32),
        _ALNUM32,
        _AR,
    ),
    _spec(
        "vault_mastodon_active_record_encryption_primary_key",
        "mastodon",
        lambda: alphanumeric(32),
        _ALNUM32,
        _AR,
    ),
    _spec(
        "vault_mastodon_vapid_private_key",
        "mastodon",
        lambda: vapid_keypair()[0],
        _check_vapid_private,
        "URL-safe base64 of a 32-byte P-256 private key (44 characters)",
    ),
    _spec(
        "vault_mastodon_vapid_public_key",
        "mastodon",
        lambda: vapid_keypair()[1],
        _check_vapid_public,
        "URL-safe base64 of a 65-byte P-256 point (88 characters)",
    ),
    _spec("vault_mastodon_db_password", "mastodon", password, _check_password, _PW),
    _spec("vault_mastodon_admin_password", "mastodon", password, _check_password, _PW),
    _spec(
        "vault_peertube_secret",
        "peertube",
        lambda: secrets.token_hex(32),
        _HEX64,
        "64 lowercase hex characters (openssl rand -hex 32)",
    ),
    _spec(
        "vault_peertube_root_password",
        "peertube",
        password,
        _check_peertube_root,
        "8..50 characters",
    ),
    _spec("vault_peertube_db_password", "peertube", password, _check_password, _PW),
    _spec(
        "vault_pixelfed_app_key",
        "pixelfed",
        pixelfed_app_key,
        _check_app_key,
        "'base64:' + base64 of 32 random bytes",
    ),
    _spec("vault_pixelfed_db_password", "pixelfed", password, _check_password, _PW),
    _spec("vault_pixelfed_admin_password", "pixelfed", password, _check_password, _PW),
    _spec("vault_redis_password", None, password, _check_password, _PW),
    _spec("vault_restic_password", None, password, _check_password, _PW),
)
SPECS_BY_KEY: dict[str, SecretSpec] = {s.key: s for s in SPECS}

# Secrets the organisation provides (fedictl cannot invent them); kept in the same vault.
PROVIDED = ("vault_smtp_password", "vault_s3_secret_access_key")


def required(enabled_apps: set[str]) -> list[SecretSpec]:
    """The generated secrets the enabled apps (plus the shared services) need."""
    return [s for s in SPECS if s.app is None or s.app in enabled_apps]


def is_missing(value: object) -> bool:
    """A secret that is absent, null or empty counts as missing; anything else is kept."""
    return value is None or value == ""


def ensure(existing: Mapping[str, object], enabled_apps: set[str]) -> dict[str, str]:
    """The secrets to add so that every required one is set. Existing values are never returned.

    Only missing keys are generated. The VAPID pair is generated as a pair: if exactly one half is
    missing, it is *not* regenerated (that would orphan the other half); validation reports it.
    """
    added: dict[str, str] = {}
    for spec in required(enabled_apps):
        if spec.key.startswith("vault_mastodon_vapid_") or not is_missing(existing.get(spec.key)):
            continue
        added[spec.key] = spec.generate()
    priv, pub = "vault_mastodon_vapid_private_key", "vault_mastodon_vapid_public_key"
    if (
        "mastodon" in enabled_apps
        and is_missing(existing.get(priv))
        and is_missing(existing.get(pub))
    ):
        added[priv], added[pub] = vapid_keypair()
    return added
