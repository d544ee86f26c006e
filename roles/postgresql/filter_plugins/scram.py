"""postgresql role filters: SCRAM-SHA-256 verifiers of the owners' passwords, on the controller.

`postgresql_scram_matches` lets the role skip re-setting an owner's password that already
matches, from the verifier its probe read in pg_authid; `postgresql_scram_verifier` makes the
verifier the role stores (as `ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`, which PostgreSQL
keeps as given), so the password itself is never sent to the host (RFC 5802 / RFC 7677).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

# PostgreSQL's default (scram_iterations) and salt length.
ITERATIONS = 4096
SALT_BYTES = 16


def scram_matches(verifier: object, password: object) -> bool:
    """True when `verifier` ("SCRAM-SHA-256$iter:salt$StoredKey:ServerKey") came from `password`.

    Anything else (no password, MD5, a malformed verifier, a non-ASCII password that SASLprep might
    change) gives False, so the role sets the password again: the safe side.
    """
    if not isinstance(verifier, str) or not isinstance(password, str) or not password.isascii():
        return False
    try:
        method, rest = verifier.split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        stored_key, server_key = keys.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        salted = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:  # also binascii.Error
        return False
    wanted_stored, wanted_server = _keys(salted)
    return hmac.compare_digest(wanted_stored, stored_key) and hmac.compare_digest(
        wanted_server, server_key
    )


def scram_verifier(password: object) -> str:
    """The verifier PostgreSQL would store for `password`, with a fresh random salt.

    Only for ASCII passwords (SASLprep leaves those unchanged); for any other the result is '', and
    the role sends the password for the server to hash instead.
    """
    if not isinstance(password, str) or not password or not password.isascii():
        return ""
    salt = os.urandom(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)
    stored_key, server_key = _keys(salted)
    return f"SCRAM-SHA-256${ITERATIONS}:{base64.b64encode(salt).decode()}${stored_key}:{server_key}"


def _keys(salted: bytes) -> tuple[str, str]:
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
    server_key = base64.b64encode(hmac.new(salted, b"Server Key", hashlib.sha256).digest()).decode()
    return stored_key, server_key


def _rows(answer: Any, fields: int) -> list[list[str]]:
    """psql --no-align --tuples-only --field-separator=| rows; none if the server did not answer."""
    if not isinstance(answer, dict) or answer.get("rc") != 0:
        return []
    return [line.split("|", fields - 1) for line in answer.get("stdout_lines", []) if line]


def pending(commands: Any, databases: Any, default_locale: str) -> dict[str, list[Any]]:
    """From the probe's answers (fedictl_state's commands owners, databases, extensions_DB): the
    owners whose attributes differ or whose stored verifier was not made from the vault's password,
    the databases missing or with another owner, encoding or locale, and the [database, extension]
    pairs missing. These follow the live answers even with the gates open: setting a password again
    stores a new salt, which is a change."""
    owners = {row[0]: row for row in _rows(commands.get("owners"), 7)}
    found = {row[0]: row for row in _rows(commands.get("databases"), 5)}
    result: dict[str, list[Any]] = {"owners": [], "databases": [], "extensions": []}
    for db in databases:
        owner = owners.get(db["owner"])
        if (
            owner is None
            or owner[1:6] != ["t", "f", "f", "f", "f"]
            or not scram_matches(owner[6], db["password"])
        ):
            result["owners"].append(db)
        locale = db.get("locale", default_locale)
        live = found.get(db["name"])
        if live is None or live[1:] != [db["owner"], "UTF8", locale, locale]:
            result["databases"].append(db)
        extensions = commands.get(f"extensions_{db['name']}")
        have = {row[0] for row in _rows(extensions, 1)} if live else set()
        result["extensions"] += [[db, ext] for ext in db.get("extensions", []) if ext not in have]
    return result


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "postgresql_pending": pending,
            "postgresql_scram_matches": scram_matches,
            "postgresql_scram_verifier": scram_verifier,
        }
