"""``fedictl secrets ensure|show|list``: add missing secrets (never rotating one), read one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fedictl import apps, inventory, secrets, vault
from fedictl.commands.options import inventory_options
from fedictl.errors import UsageError, ValidationError
from fedictl.inventory import VAULT


def _open(inventory_arg: str, vault_password_file: Path | None) -> tuple[Path, Any, dict[str, Any]]:
    path = inventory.resolve(inventory_arg)
    secret = vault.load_secret(inventory.password_file_for(path, vault_password_file))
    return path, secret, vault.read_vault(path / VAULT, secret)


@click.group("secrets")
def secrets_group() -> None:
    """Inventory secrets in the ansible-vault file group_vars/all/vault.yml."""


@secrets_group.command("ensure")
@inventory_options
def ensure(inventory_arg: str, vault_password_file: Path | None) -> None:
    """Generate every required secret that is missing. Existing values are never changed."""
    path, secret, current = _open(inventory_arg, vault_password_file)
    inv = inventory.load(path, secret)
    if inv.problems:
        raise ValidationError([str(p) for p in inv.problems])
    enabled = set(apps.enabled(inv.all_vars.get("fedictl_apps")))
    added = secrets.ensure(current, enabled)
    if not added:
        click.echo(f"{path / VAULT}: every required secret is set; nothing changed.", err=True)
        return
    vault.write_vault(path / VAULT, inventory.vault_order(current | added), secret)
    for key in added:
        click.echo(f"added {key}")
    click.echo(f"{path / VAULT}: {len(added)} secret(s) added; existing ones unchanged.", err=True)


@secrets_group.command("show")
@inventory_options
@click.argument("key")
def show(inventory_arg: str, vault_password_file: Path | None, key: str) -> None:
    """Print one secret, e.g. mastodon_admin_password (the vault_ prefix is optional)."""
    _, _, current = _open(inventory_arg, vault_password_file)
    name = key if key.startswith("vault_") else f"vault_{key}"
    if name not in current:
        raise UsageError(
            f"no secret {name!r} in the vault; fix: use one of: " + ", ".join(sorted(current))
        )
    value = current[name]
    click.echo("" if value is None else str(value))


@secrets_group.command("list")
@inventory_options
def list_secrets(inventory_arg: str, vault_password_file: Path | None) -> None:
    """List the secrets' names and whether each is set (never the values)."""
    _, _, current = _open(inventory_arg, vault_password_file)
    for name, value in inventory.vault_order(current).items():
        click.echo(f"{name}\t{'missing' if secrets.is_missing(value) else 'set'}")
