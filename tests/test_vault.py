"""Vault round trips: what fedictl encrypts, ansible-vault reads, and the reverse."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
from _inventory_helpers import ansible_tool

from fedictl import vault


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "cfg" / "vault" / "t.pass"
    vault.create_password_file(path)
    return path


def test_password_file_is_private_and_never_overwritten(password_file: Path) -> None:
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(password_file.parent.stat().st_mode) == 0o700
    assert len(password_file.read_text().strip()) >= 40
    before = password_file.read_text()
    with pytest.raises(FileExistsError):
        vault.create_password_file(password_file)
    assert password_file.read_text() == before


def test_round_trip_in_process(password_file: Path, tmp_path: Path) -> None:
    secret = vault.load_secret(password_file)
    data = {"vault_a": "x" * 40, "vault_b": "ünïcode"}
    vault.write_vault(tmp_path / "vault.yml", data, secret)
    assert stat.S_IMODE((tmp_path / "vault.yml").stat().st_mode) == 0o600
    assert vault.read_vault(tmp_path / "vault.yml", secret) == data


def test_ansible_vault_cli_reads_what_fedictl_writes(password_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "vault.yml"
    vault.write_vault(path, {"vault_a": "hello"}, vault.load_secret(password_file))
    shown = subprocess.run(
        [
            ansible_tool("ansible-vault"),
            "view",
            "--vault-password-file",
            str(password_file),
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == "vault_a: !unsafe hello\n"  # fedictl writes every string unsafe


def test_fedictl_reads_what_ansible_vault_cli_writes(password_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "vault.yml"
    path.write_text("vault_b: world\n")
    subprocess.run(
        [
            ansible_tool("ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password_file),
            str(path),
        ],
        capture_output=True,
        check=True,
    )
    assert vault.read_vault(path, vault.load_secret(password_file)) == {"vault_b": "world"}


def test_wrong_password_names_the_file_and_the_fix(password_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "vault.yml"
    vault.write_vault(path, {"vault_a": "hello"}, vault.load_secret(password_file))
    other = tmp_path / "other.pass"
    other.write_text("other\n")
    with pytest.raises(vault.VaultError) as caught:
        vault.read_vault(path, vault.load_secret(other))
    assert str(path) in str(caught.value) and "--vault-password-file" in str(caught.value)
    assert "hello" not in str(caught.value)


def test_plaintext_vault_is_refused(password_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "vault.yml"
    path.write_text("vault_a: in-the-clear\n")
    with pytest.raises(vault.VaultError, match="not ansible-vault encrypted"):
        vault.read_vault(path, vault.load_secret(password_file))


def test_missing_password_file(tmp_path: Path) -> None:
    with pytest.raises(vault.VaultError, match="cannot read the vault password"):
        vault.load_secret(tmp_path / "absent.pass")
