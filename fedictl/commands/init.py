"""``fedictl init NAME``: describe the organisation once and write a valid, vaulted inventory."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from fedictl import apps, inventory, paths, vault, wizard
from fedictl.commands.options import AppChoice, PathArg
from fedictl.model import ROLES


class _ClickPrompter:
    """The wizard's prompts at the terminal (on stderr, so stdout stays the list of files)."""

    def ask(self, text: str, default: Any = None, kind: type = str, secret: bool = False) -> Any:
        if secret:
            return click.prompt(text, default="", hide_input=True, show_default=False, err=True)
        return click.prompt(text, default=default, type=kind, err=True)

    def confirm(self, text: str, default: bool) -> bool:
        return click.confirm(text, default=default, err=True)


@functools.cache
def _wizard_options(registered: tuple[str, ...]) -> list[click.Parameter]:
    """A flag per role's host, per single-server setting and per question (``registered``: the
    apps these are for, so that the options are made again when one is registered)."""
    options: list[click.Parameter] = [
        click.Option(
            [f"--{role}-host"],
            default=None,
            help=f"Server name for {role} [answers: placement.{role}]",
        )
        for role in ROLES
    ]
    options += [
        click.Option(
            [flag],
            type=int if key == "port" else str,
            default=None,
            help=f"Single server: {key} [answers: servers]",
        )
        for key, flag in wizard.SERVER_FLAGS.items()
    ]
    options += [
        click.Option([q.flag], type=q.kind, default=None, help=f"{q.prompt} [answers: {q.path}]")
        for q in wizard.questions()
        if q.flag
    ]
    return options


class _InitCommand(click.Command):
    """``init``, whose flags follow the wizard's questions (an app's own among them)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        help_option = self.get_help_option(ctx)
        declared = [p for p in super().get_params(ctx) if p is not help_option]
        wizard_options = _wizard_options(apps.names())
        return [*declared, *wizard_options, *([help_option] if help_option else [])]


@click.command("init", cls=_InitCommand)
@click.argument("name")
@click.option(
    "--answers",
    "answers_file",
    type=PathArg(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with the answers (see examples/answers.yml).",
)
@click.option("--no-input", is_flag=True, help="Never prompt; unanswered keys take defaults.")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite an existing inventory (its secrets are kept, never rotated).",
)
@click.option(
    "--vault-password-file",
    type=PathArg(exists=True, dir_okay=False, path_type=Path),
    help="Existing vault password file (default: a new one in the user's config dir).",
)
@click.option(
    "--app",
    "app",
    multiple=True,
    type=AppChoice(),
    help="Enable an app (repeatable) [answers: apps]",
)
@click.option(
    "--s3/--no-s3", default=None, help="Media in S3-compatible storage [answers: s3.enabled]"
)
@click.option(
    "--admin-ssh-key",
    multiple=True,
    metavar="KEY|FILE.pub",
    help="Admin SSH public key, or its .pub file (repeatable) [answers: admin_ssh_keys]",
)
def init(
    name: str,
    answers_file: Path | None,
    no_input: bool,
    force: bool,
    vault_password_file: Path | None,
    **flags: Any,
) -> None:
    """Describe the organisation and write inventories/NAME with every secret generated.

    Prompts for anything not given, unless --answers or --no-input is used. Secrets the
    organisation provides are read from the answers file, from FEDICTL_SMTP_PASSWORD /
    FEDICTL_S3_SECRET_ACCESS_KEY, or from a hidden prompt; they are never printed.
    """
    target = wizard.target(name, force)
    prompter = _ClickPrompter() if answers_file is None and not no_input else None
    password_file = vault_password_file or inventory.default_password_file(name)
    # Inline !vault values in the answers are decrypted with the password the vault will use.
    secret = vault.load_secret(password_file) if paths.is_file(password_file) else None
    answers = wizard.collect(name, wizard.read_answers(answers_file, secret), flags, prompter)
    source = str(answers_file) if answers_file else "answers"
    done = wizard.write(target, answers, source, password_file, force)
    for path in done.paths:
        click.echo(f"wrote {wizard.display(path)}")
    state = "new, mode 0600" if done.created else "existing"
    click.echo(f"Vault password file ({state}): {done.password_file}", err=True)
    click.echo(
        "Keep it safe and out of git: without it the secrets in the vault are lost.", err=True
    )
    click.echo(f"Next: fedictl validate -i {wizard.display(target)}", err=True)
