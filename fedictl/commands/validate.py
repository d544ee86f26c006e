"""``fedictl validate -i INV``: check an inventory as Ansible will load it; exit 2 if invalid."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fedictl import inventory
from fedictl.errors import ValidationError
from fedictl.inventory import Inventory
from fedictl.validate import load_and_check


def inventory_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-i/--inventory`` and ``--vault-password-file``, shared by validate, secrets, deploy."""
    func = click.option(
        "--vault-password-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Vault password file (default: ~/.config/fedictl/vault/NAME.pass).",
    )(func)
    return click.option(
        "-i",
        "--inventory",
        "inventory_arg",
        required=True,
        metavar="INV",
        help="Inventory directory, e.g. inventories/NAME.",
    )(func)


def load_valid(inventory_arg: str, vault_password_file: Path | None, then: str = "") -> Inventory:
    """The loaded inventory, or ValidationError naming every problem."""
    path = inventory.resolve(inventory_arg)
    inv, problems = load_and_check(path, vault_password_file)
    if problems:
        click.echo(f"{path} is invalid, {len(problems)} problem(s){then}:", err=True)
        raise ValidationError([str(p) for p in problems])
    return inv


@click.command("validate")
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def validate(
    ctx: click.Context, inventory_arg: str, vault_password_file: Path | None, as_json: bool
) -> None:
    """Check an inventory (hosts, group_vars, host_vars, vault) and report every problem."""
    if as_json:
        path = inventory.resolve(inventory_arg)
        _, problems = load_and_check(path, vault_password_file)
        click.echo(
            json.dumps(
                {
                    "inventory": str(path),
                    "valid": not problems,
                    "problems": [p.__dict__ for p in problems],
                },
                indent=2,
            )
        )
        ctx.exit(2 if problems else 0)
    inv = load_valid(inventory_arg, vault_password_file)
    hosts = inv.groups.get("fediverse", [])
    click.echo(f"{inv.path}: valid ({len(hosts)} host(s): {', '.join(hosts)})")
