"""``fedictl check -i INV``: health of every instance, for people (a table) and for monitoring.

Exit codes follow the Nagios/Icinga plugin convention: 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN. So that a
monitoring system never reads a typo as an outage, bad input (options, inventory, vault password)
exits 3 UNKNOWN here, where other fedictl commands exit 2: this command's class maps click's usage
errors and fedictl's errors to 3, keeping their messages. See docs/check.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from fedictl import check, check_host, inventory
from fedictl.check_http import Network
from fedictl.commands.options import AppChoice, PathArg, inventory_options, load_valid
from fedictl.errors import FedictlError, os_error_message
from fedictl.inventory import VAULT

UNKNOWN = check.Status.UNKNOWN.value


class _Unknown(click.ClickException):
    exit_code = UNKNOWN


class _UnknownUsage(click.UsageError):
    exit_code = UNKNOWN


class NagiosCommand(click.Command):
    """A command whose bad input exits 3 (UNKNOWN) rather than 2, which monitors read as CRIT."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _UnknownUsage(exc.format_message(), exc.ctx) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UnknownUsage(exc.format_message(), exc.ctx) from exc
        except FedictlError as exc:
            raise _Unknown(str(exc)) from exc
        except OSError as exc:
            raise _Unknown(os_error_message(exc)) from exc


_EPILOG = "\n\n".join(
    [
        "\b\nChecks (--only/--skip take names, comma lists, or the groups "
        + ", ".join(check.GROUPS)
        + "):\n"
        + "\n".join(f"  {name:<14} {text}" for name, text in check.CHECKS.items()),
        "\b\nExit codes (Nagios/Icinga): 0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN; the worst result\n"
        "wins (CRIT over UNKNOWN over WARN). Bad input (options, inventory, vault\n"
        "password) exits 3 UNKNOWN. Details: docs/check.md.",
    ]
)


@click.command("check", cls=NagiosCommand, epilog=_EPILOG)
@inventory_options
@click.option("--app", "apps", multiple=True, type=AppChoice(), help="Only this app (repeatable).")
@click.option(
    "--instance", "names", multiple=True, metavar="DOMAIN", help="Only the instance on this domain."
)
@click.option("--only", multiple=True, metavar="CHECKS", help="Run only these checks.")
@click.option("--skip", multiple=True, metavar="CHECKS", help="Skip these checks (e.g. host).")
@click.option(
    "--ca-file",
    type=PathArg(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Trust only this CA bundle (PEM) for certificates, e.g. a private or test CA.",
)
@click.option(
    "--timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds each check may take.",
)
@click.option(
    "--resolve",
    multiple=True,
    metavar="DOMAIN:ADDR",
    help="Connect to ADDR for DOMAIN instead of asking DNS (as curl --resolve).",
)
@click.option(
    "--connect-to",
    multiple=True,
    metavar="DOMAIN:PORT:ADDR:PORT",
    help="Connect to ADDR:PORT for DOMAIN:PORT (as curl --connect-to).",
)
@click.option(
    "--account",
    multiple=True,
    metavar="APP=USER",
    help="Admin account WebFinger looks up (default: mastodon_owner_username or admin; "
    "peertube root; pixelfed admin).",
)
@click.option("--tls-warn-days", type=float, default=21, show_default=True)
@click.option("--tls-crit-days", type=float, default=7, show_default=True)
@click.option("--disk-warn", type=float, default=15, show_default=True, help="Percent free.")
@click.option("--disk-crit", type=float, default=5, show_default=True, help="Percent free.")
@click.option("--backup-warn", type=float, default=26, show_default=True, help="Hours.")
@click.option("--backup-crit", type=float, default=50, show_default=True, help="Hours.")
@click.option(
    "--queue-warn",
    type=int,
    default=1000,
    show_default=True,
    help="Sidekiq queue:default or retry size.",
)
@click.option("--queue-crit", type=int, default=10000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--prometheus",
    type=PathArg(dir_okay=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the report for node_exporter's textfile collector (atomically).",
)
@click.pass_context
def check_command(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    apps: tuple[str, ...],
    names: tuple[str, ...],
    only: tuple[str, ...],
    skip: tuple[str, ...],
    ca_file: Path | None,
    timeout: float,
    resolve: tuple[str, ...],
    connect_to: tuple[str, ...],
    account: tuple[str, ...],
    tls_warn_days: float,
    tls_crit_days: float,
    disk_warn: float,
    disk_crit: float,
    backup_warn: float,
    backup_crit: float,
    queue_warn: int,
    queue_crit: int,
    as_json: bool,
    prometheus: Path | None,
) -> None:
    """Check every instance in the inventory, concurrently, as a Fediverse peer would.

    DNS, the HTTP redirect, HTTPS and its certificate, the app's health and API endpoints,
    NodeInfo, WebFinger and the ActivityPub actor; over SSH (skip with --skip host): systemd
    units, free disk, the last backup's age and Mastodon's Sidekiq backlog. Prints a table (or
    --json) and exits with the worst status.
    """
    options = check.Options(
        checks=check.selected_checks(only, skip),
        timeout=timeout,
        ca_file=ca_file,
        network=Network(
            resolve=check.parse_resolve(resolve), connect_to=check.parse_connect_to(connect_to)
        ),
        tls_warn_days=tls_warn_days,
        tls_crit_days=tls_crit_days,
        disk_warn_percent=disk_warn,
        disk_crit_percent=disk_crit,
        backup_warn_hours=backup_warn,
        backup_crit_hours=backup_crit,
        queue_warn=queue_warn,
        queue_crit=queue_crit,
    )
    options.check_thresholds()
    options.check_ca_file()
    accounts = check.parse_accounts(account)
    if prometheus is not None:
        check.check_writable(prometheus)
    inv = load_valid(inventory_arg, vault_password_file, "; nothing was checked")
    chosen = check.instances(inv, apps, names, accounts)
    host_checks = None
    if options.checks & set(check.HOST_CHECKS):
        password = (
            inventory.password_file_for(inv.path, vault_password_file)
            if (inv.path / VAULT).exists()
            else None
        )

        def host_checks() -> list[check.Result]:
            return check_host.run(inv, chosen, options, password)

    report = check.run(chosen, options, host_checks)
    if prometheus is not None:
        check.write_atomically(prometheus, check.prometheus_text(report))
    if as_json:
        click.echo(check.json_text(report))
    else:
        for line in check.table(report):
            click.echo(line)
    ctx.exit(report.status.value)
