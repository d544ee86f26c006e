"""The ``fedictl`` command: the root group, registration, and the one place errors become exits."""

from __future__ import annotations

from typing import Any

import click

from fedictl import __version__
from fedictl.errors import FedictlError, os_error_message


class _Failure(click.ClickException):
    """A failure the user can act on (exit 1)."""

    exit_code = 1


class _BadInput(click.ClickException):
    """Bad input: a value, file or combination that cannot be used (exit 2)."""

    exit_code = 2


class FedictlGroup(click.Group):
    """Turns core errors into clear messages and exit codes (1 failure, 2 bad input).

    Core modules raise ``FedictlError`` subclasses; each carries its exit code, so a
    ``UsageError``/``ValidationError`` exits 2 and any other failure exits 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FedictlError as exc:
            kind = _BadInput if exc.exit_code == 2 else _Failure
            raise kind(str(exc)) from exc
        except OSError as exc:  # a path given on the command line the system refuses
            raise _BadInput(os_error_message(exc)) from exc


@click.group(cls=FedictlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedictl")
def cli() -> None:
    """Self-host Mastodon, Pixelfed and PeerTube: provision, upgrade, back up, check."""


def _register() -> None:
    from fedictl.commands import backup, check, deploy, init, lab, secrets, upgrade, validate

    cli.add_command(lab.lab)
    cli.add_command(init.init)
    cli.add_command(validate.validate)
    cli.add_command(secrets.secrets_group)
    cli.add_command(deploy.deploy)
    cli.add_command(check.check_command)
    cli.add_command(upgrade.upgrade_cmd)
    cli.add_command(backup.backup_group)


_register()


def main() -> None:
    cli(prog_name="fedictl")


if __name__ == "__main__":  # pragma: no cover
    main()
