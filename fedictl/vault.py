"""Ansible Vault files: read the password, encrypt, decrypt.

This uses ansible-core's own ``VaultLib``/``get_file_vault_secret`` in-process rather than running
``ansible-vault``: the bytes are the same format the CLI writes (``$ANSIBLE_VAULT;1.1;AES256``),
the password file is read exactly as ``--vault-password-file`` reads it (including executable
password scripts), and no plaintext secret passes through a temporary file, argv or a pipe.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret, get_file_vault_secret, is_encrypted

from fedictl.errors import FedictlError


class VaultError(FedictlError):
    """A vault or its password file cannot be used."""


def load_secret(password_file: Path) -> VaultSecret:
    """The secret in ``password_file``, read as ``ansible-playbook --vault-password-file`` does."""
    try:
        secret: VaultSecret = get_file_vault_secret(
            filename=str(password_file), vault_id="default", loader=DataLoader()
        )
        secret.load()
    except AnsibleError as exc:
        raise VaultError(
            f"{password_file}: cannot read the vault password ({exc.message}); "
            "fix: pass --vault-password-file with the file init named"
        ) from exc
    return secret


def create_password_file(path: Path) -> None:
    """Write a new random vault password to ``path`` (mode 0600, parent dirs 0700).

    Never overwrites: an existing file may be the only key to an existing vault.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")


def encrypt_text(plaintext: str, secret: VaultSecret) -> str:
    encrypted: bytes = VaultLib([("default", secret)]).encrypt(plaintext, secret)
    return encrypted.decode()


def decrypt_text(ciphertext: str, secret: VaultSecret, source: Path) -> str:
    if not is_encrypted(ciphertext):
        raise VaultError(
            f"{source}: is not ansible-vault encrypted; "
            "fix: encrypt it with `ansible-vault encrypt` or regenerate it with fedictl"
        )
    try:
        plaintext: bytes = VaultLib([("default", secret)]).decrypt(ciphertext)
    except AnsibleError as exc:
        raise VaultError(
            f"{source}: cannot be decrypted with this vault password; "
            "fix: pass --vault-password-file naming the password file init wrote"
        ) from exc
    return plaintext.decode()


def write_vault(path: Path, data: dict[str, Any], secret: VaultSecret) -> None:
    """Dump ``data`` as YAML, encrypt it and write it to ``path`` (mode 0600)."""
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    encrypted = encrypt_text(text, secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(encrypted)
    tmp.replace(path)


def read_vault(path: Path, secret: VaultSecret) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise VaultError(
            f"{path}: cannot be read ({exc.strerror}); fix: run `fedictl init`"
        ) from exc
    data = yaml.safe_load(decrypt_text(text, secret, path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VaultError(f"{path}: holds {type(data).__name__}, not a mapping of vault_* keys")
    return data
