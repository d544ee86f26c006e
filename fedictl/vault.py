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

from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import (
    AnsibleVaultFormatError,
    VaultLib,
    VaultSecret,
    get_file_vault_secret,
    is_encrypted,
)

from fedictl import paths, yamlio
from fedictl.errors import FedictlError, shown

_PASSWORD_FILE_LIMIT = 1024 * 1024
_FIX_PASSWORD = "pass --vault-password-file naming the password file init wrote"  # noqa: S105


class VaultError(FedictlError):
    """A vault or its password file cannot be used: what was found in ``file``, and the fix."""

    def __init__(self, file: object, found: str, fix: str) -> None:
        self.file, self.found, self.fix = str(file), found, fix
        super().__init__(f"{shown(file)}: {found}; fix: {fix}")


def load_secret(password_file: Path) -> VaultSecret:
    """The secret in ``password_file``, read as ``ansible-playbook --vault-password-file`` does."""
    present = paths.exists(password_file)
    size = password_file.stat().st_size if present else 0
    odd = not password_file.is_file() or size > _PASSWORD_FILE_LIMIT
    if present and not password_file.is_dir() and odd:  # Ansible names those
        raise VaultError(
            password_file,
            f"not a vault password file (a device, a pipe or {size} bytes)",
            "pass --vault-password-file with the file init named",
        )
    try:
        secret: VaultSecret = get_file_vault_secret(
            filename=str(password_file), vault_id="default", loader=DataLoader()
        )
        secret.load()
    except AnsibleError as exc:
        raise VaultError(
            password_file,
            f"cannot read the vault password ({exc.message})",
            "pass --vault-password-file with the file init named",
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


def _refused(source: Path, exc: Exception) -> VaultError:
    """``VaultLib``'s refusal of ``source`` as what was found and the fix."""
    text = " ".join(str(getattr(exc, "message", exc)).split())
    if isinstance(exc, AnsibleVaultFormatError) or not isinstance(exc, AnsibleError):
        found, fix = f"a damaged vault ({text})", f"restore {source.name} from a copy or a backup"
    elif "could not be found" in text:
        found = f"a vault in a format ansible-vault does not know ({text})"
        fix = "decrypt it with the tool that wrote it, then `ansible-vault encrypt` it"
    else:
        found, fix = "a vault this password cannot decrypt", _FIX_PASSWORD
    return VaultError(source, found, fix)


def decrypt_text(ciphertext: str, secret: VaultSecret, source: Path) -> str:
    if not is_encrypted(ciphertext):
        raise VaultError(
            source,
            "a file that is not ansible-vault encrypted",
            "encrypt it with `ansible-vault encrypt` or regenerate it with fedictl",
        )
    try:
        plaintext: bytes = VaultLib([("default", secret)]).decrypt(ciphertext)
    except (AnsibleError, ValueError, TypeError) as exc:  # ansible-core lets some slip through
        raise _refused(source, exc) from exc
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError(
            source,
            "a vault whose contents are not UTF-8 text",
            "restore it from a copy, or rewrite it as UTF-8 YAML with `ansible-vault edit`",
        ) from None


def write_vault(path: Path, data: dict[str, Any], secret: VaultSecret) -> None:
    """Dump ``data`` as YAML (strings ``!unsafe``), encrypt it and write it to ``path`` (0600)."""
    text = yamlio.dump(data)
    encrypted = encrypt_text(text, secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(encrypted)
    tmp.replace(path)


def read_ciphertext(path: Path) -> str:
    """The text of vault file ``path``; VaultError naming what is wrong with the file."""
    try:
        raw = yamlio.read_bytes(path, fix="make it the encrypted file `fedictl init` writes")
    except yamlio.YamlError as exc:
        if not path.exists():
            raise VaultError(path, "nothing", "run `fedictl init`") from None
        raise VaultError(path, exc.found, exc.fix) from None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise VaultError(
            path,
            "binary data, not an ansible-vault file",
            "restore it from a copy, or regenerate it with `fedictl init --force`",
        ) from None


def read_vault(path: Path, secret: VaultSecret) -> dict[str, Any]:
    plaintext = decrypt_text(read_ciphertext(path), secret, path)
    data = yamlio.load(plaintext, str(path), secret)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VaultError(
            path, f"a {type(data).__name__}", "make it a mapping of vault_* keys to values"
        )
    return data
