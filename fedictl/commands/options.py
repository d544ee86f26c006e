"""Options and helpers shared by several commands: the inventory, its vault, an app name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from fedictl import apps, inventory, yamlio
from fedictl.errors import ValidationError
from fedictl.inventory import Inventory
from fedictl.validate import load_and_check


class PathArg(click.Path):
    """``click.Path`` that refuses a path with a NUL byte as bad input (click's own check of
    such a path raises ValueError, a traceback)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "\x00" in value:
            self.fail(f"{value!r} holds a NUL byte; fix: give the path without it", param, ctx)
        return super().convert(value, param, ctx)


def inventory_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-i/--inventory`` and ``--vault-password-file``, shared by validate, secrets, deploy."""
    func = click.option(
        "--vault-password-file",
        type=PathArg(dir_okay=False, path_type=Path),
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


def pattern_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback for --limit and --tags: given, they may not be blank (ansible-playbook
    would then run on every host and every task) nor hold a control character."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter(
            f"{value!r} is blank, and ansible-playbook would run everything; fix: give hosts, "
            "groups or tags, or leave the option out"
        )
    if (bad := yamlio.control_character(value)) is not None:
        raise click.BadParameter(f"{value!r} holds {bad}; fix: remove it")
    return value


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
