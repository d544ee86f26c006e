"""Every secret fedictl generates: the apps' own (``fedictl/apps/``) and the shared services'.

Each app module declares its secrets with their exact upstream format and a format check
(``fedictl.secret_formats``); the shared ones (Redis, restic) are passwords.

``ensure`` adds what is missing and never changes a value that is already set: rotating any of
these loses data or logs every user out.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedictl import apps
from fedictl.secret_formats import SecretPair, SecretSpec, password_spec

# Secrets of the shared services, needed whichever apps are enabled.
SHARED: tuple[SecretSpec, ...] = (
    password_spec("vault_redis_password", None),
    password_spec("vault_restic_password", None),
)

# Secrets the organisation provides (fedictl cannot invent them); kept in the same vault.
PROVIDED = ("vault_smtp_password", "vault_s3_secret_access_key")


def specs() -> tuple[SecretSpec, ...]:
    """Every generated secret: each app's in registry order, then the shared ones."""
    return (*(spec for app in apps.registered() for spec in app.secrets), *SHARED)


def by_key() -> dict[str, SecretSpec]:
    return {s.key: s for s in specs()}


def __getattr__(name: str) -> tuple[SecretSpec, ...] | dict[str, SecretSpec]:
    """``SPECS`` and ``SPECS_BY_KEY``: ``specs()`` and ``by_key()``, read when used."""
    if name == "SPECS":
        return specs()
    if name == "SPECS_BY_KEY":
        return by_key()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def required(enabled_apps: set[str]) -> list[SecretSpec]:
    """The generated secrets the enabled apps (plus the shared services) need."""
    return [s for s in specs() if s.app is None or s.app in enabled_apps]


def pairs(enabled_apps: set[str]) -> list[SecretPair]:
    """The secret pairs (generated together) of the enabled apps."""
    return [p for app in apps.registered() if app.name in enabled_apps for p in app.secret_pairs]


def is_missing(value: object) -> bool:
    """A secret that is absent, null or empty counts as missing; anything else is kept."""
    return value is None or value == ""


def ensure(existing: Mapping[str, object], enabled_apps: set[str]) -> dict[str, str]:
    """The secrets to add so that every required one is set. Existing values are never returned.

    Only missing keys are generated. A pair (Mastodon's VAPID keys) is generated as a pair: if
    exactly one half is missing, it is *not* regenerated (that would orphan the other half);
    validation reports it.
    """
    together = pairs(enabled_apps)
    paired = {key for pair in together for key in pair.keys}
    added: dict[str, str] = {}
    for spec in required(enabled_apps):
        if spec.key in paired or not is_missing(existing.get(spec.key)):
            continue
        added[spec.key] = spec.generate()
    for pair in together:
        if all(is_missing(existing.get(key)) for key in pair.keys):
            added[pair.first], added[pair.second] = pair.generate()
    return added
