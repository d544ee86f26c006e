"""Options and helpers shared by several commands: the inventory, its vault, an app name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from fedictl import apps, inventory
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


class AppChoice(click.Choice[str]):
    """One of the registered apps, read when the value is checked (an app registered later is
    accepted too)."""

    def __init__(self) -> None:
        super().__init__(apps.names())

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return apps.names()

    @choices.setter
    def choices(self, _: Sequence[str]) -> None:
        """click sets the choices once; the registry is read instead."""
