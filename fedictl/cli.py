"""The ``fedictl`` command: the root group, registration, and the one place errors become exits."""

from __future__ import annotations

import sys
from typing import Any

import click

from fedictl import __version__
from fedictl.errors import FedictlError


class FedictlGroup(click.Group):
    """Turns core errors into clear messages and exit codes (1 failure, 2 bad input).

    Core modules raise ``FedictlError`` subclasses; each carries its exit code, so a
    ``UsageError``/``ValidationError`` exits 2 and any other failure exits 1.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FedictlError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from exc


@click.group(cls=FedictlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fedictl")
def cli() -> None:
    """Self-host Mastodon, Pixelfed and PeerTube: provision, upgrade, back up, check."""


def _register() -> None:
    from fedictl.commands import lab

    cli.add_command(lab.lab)


_register()


def main() -> None:
    cli(prog_name="fedictl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
