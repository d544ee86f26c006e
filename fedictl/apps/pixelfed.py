"""Pixelfed, as fedictl's CLI knows it.

``APP_KEY`` follows the upstream facts (``shared/upstream``): ``base64:`` + standard base64 of 32
random bytes (AES-256-CBC). The unit names follow upstream's process model (php-fpm of Debian 13's
PHP 8.4, a Horizon worker) until its role lands.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from fedictl.apps import ApiEndpoint, App, Question, TextEndpoint
from fedictl.secret_formats import SecretSpec, describe, password_spec

NAME = "pixelfed"


@dataclass
class Settings:
    domain: str = ""
    # v0.12.6 is the newest release the upstream facts were checked against (later tags exist).
    version: str = "v0.12.6"
    db_name: str = "pixelfed"
    db_user: str = "pixelfed"
    # Laravel uses three Redis databases: default (cache, queue), session, pulse.
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


SECRETS = (
    SecretSpec(
        "vault_pixelfed_app_key",
        NAME,
        pixelfed_app_key,
        _check_app_key,
        "'base64:' + base64 of 32 random bytes",
    ),
    password_spec("vault_pixelfed_db_password", NAME),
    password_spec("vault_pixelfed_admin_password", NAME),
)

APP = App(
    name=NAME,
    settings=Settings,
    software="pixelfed",
    health=TextEndpoint("/api/service/health-check", "OK"),
    api=ApiEndpoint("/api/nodeinfo/2.0.json"),  # a NodeInfo document
    account="admin",  # upstream's documented admin username, until its role names one
    redis=("redis_db", "redis_db_session", "redis_db_pulse"),
    secrets=SECRETS,
    units=("php8.4-fpm.service", "pixelfed-horizon.service"),
    disk_paths=("/", "/var/www/pixelfed"),
    questions=(Question("domain", "--pixelfed-domain", "Pixelfed domain"),),
)
