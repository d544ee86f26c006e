"""PeerTube, as fedictl's CLI knows it.

Secrets follow the upstream facts (``shared/upstream``): ``secrets.peertube`` is
``openssl rand -hex 32``, 64 hex characters; the initial root password must be 8..50 characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedictl.apps import ApiEndpoint, App, Question, TextEndpoint
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
    domain: str = ""
    version: str = "v8.2.1"
    db_name: str = "peertube_prod"
    db_user: str = "peertube"
    redis_db: int = 2
    port: int = 9000


def _check_root_password(value: str) -> str | None:
    if 8 <= len(value) <= 50 and len(value.encode()) <= 72 and not value.isspace():
        return None
    return f"{describe(value)}, not 8..50 characters (PeerTube's limit)"


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

APP = App(
    name=NAME,
    settings=Settings,
    software="peertube",
    health=TextEndpoint("/api/v1/ping", "pong"),
    api=ApiEndpoint("/api/v1/config", version_key="serverVersion"),
    account="root",  # PeerTube always creates root
    ports=("port",),
    redis=("redis_db",),
    secrets=SECRETS,
    units=("peertube.service",),
    disk_paths=("/", "/var/www/peertube"),
    questions=(Question("domain", "--peertube-domain", "PeerTube domain"),),
)
