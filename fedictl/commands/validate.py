"""``fedictl validate -i INV``: check an inventory as Ansible will load it; exit 2 if invalid."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fedictl import inventory
from fedictl.commands.options import inventory_options, load_valid
from fedictl.validate import load_and_check


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
