"""Secret value formats: what a generated secret is, how it is made, and how its shape is checked.

Generic building blocks only (random text, passwords, a pattern check); the formats one app needs
are declared in its module under ``fedictl/apps/``. A check returns None when the value is fine,
else what is wrong with it, never the value itself.

Passwords (database users, Redis, restic, admin accounts) are 32 characters from ``[A-Za-z0-9]``,
so they need no quoting in ``.env`` files, YAML or connection URLs.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
PASSWORD_FORMAT = "a password (16..128 characters from [A-Za-z0-9._~-])"  # noqa: S105 - a format
_PASSWORD_RE = re.compile(r"[A-Za-z0-9._~-]{16,128}")

Check = Callable[[str], "str | None"]


@dataclass(frozen=True)
class SecretSpec:
    """One generated secret: vault key, the app that needs it (None: always), format."""

    key: str
    app: str | None
    generate: Callable[[], str]
    check: Check
    format: str


@dataclass(frozen=True)
class SecretPair:
    """Two secrets made together (a key pair): neither half is ever generated alone.

    ``belong`` says whether the second value belongs to the first; it is True when either half
    cannot be read, because each half's own check reports its format.
    """

    first: str
    second: str
    generate: Callable[[], tuple[str, str]]
    belong: Callable[[str, str], bool]

    @property
    def keys(self) -> tuple[str, str]:
        return self.first, self.second

    def problem(self, first: str, second: str) -> str | None:
        """None if the two values belong together, else what is wrong (never a value)."""
        if self.belong(first, second):
            return None
        return f"a public key that does not belong to {self.first}"


def alphanumeric(length: int) -> str:
    """Ruby's ``SecureRandom.alphanumeric(length)``."""
    return "".join(secrets.choice(ALNUM) for _ in range(length))


def password() -> str:
    return alphanumeric(PASSWORD_LENGTH)


def hex_token(length: int) -> Callable[[], str]:
    """A generator of ``length`` random bytes as lowercase hex (``openssl rand -hex LENGTH``)."""
    return lambda: secrets.token_hex(length)


def describe(value: str) -> str:
    """A secret's shape for a finding: its length only."""
    return f"{len(value)} characters"


def matching(pattern: str, what: str) -> Check:
    """A check that the whole value matches ``pattern``; ``what`` names the format."""
    compiled = re.compile(pattern)

    def check(value: str) -> str | None:
        return None if compiled.fullmatch(value) else f"{describe(value)}, not {what}"

    return check


def check_password(value: str) -> str | None:
    if _PASSWORD_RE.fullmatch(value):
        return None
    return f"{describe(value)}, not 16..128 characters from [A-Za-z0-9._~-]"


def password_spec(key: str, app: str | None) -> SecretSpec:
    """A password secret: 32 alphanumerics generated, any password accepted."""
    return SecretSpec(key, app, password, check_password, PASSWORD_FORMAT)
