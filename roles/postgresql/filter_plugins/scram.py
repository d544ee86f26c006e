"""postgresql role filter: does a stored SCRAM-SHA-256 verifier belong to a password?

Lets the role skip re-setting an owner's password that already matches, from the verifier its
probe read in pg_authid, without sending the password to the host. Runs on the controller
(RFC 5802 / RFC 7677).
"""

from __future__ import annotations

import base64
import hashlib
import hmac


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
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    wanted_stored = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
    wanted_server = base64.b64encode(
        hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    ).decode()
    return hmac.compare_digest(wanted_stored, stored_key) and hmac.compare_digest(
        wanted_server, server_key
    )


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"postgresql_scram_matches": scram_matches}
