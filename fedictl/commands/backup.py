"""``fedictl backup run|list|restore|drill``: the nightly backups, on demand and proven."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from fedictl import backup, inventory, paths
from fedictl.commands.options import AppChoice, inventory_options, load_valid
from fedictl.inventory import Inventory

_NO_HOST = "; no host was contacted"


def _open(inventory_arg: str, vault_password_file: Path | None) -> tuple[Inventory, Path]:
    inv = load_valid(inventory_arg, vault_password_file, _NO_HOST)
    return inv, inventory.password_file_for(inv.path, vault_password_file)


def _print_command(playbook: backup.Playbook, reports: Path) -> None:
    click.echo(f"# in {paths.project_root()}", err=True)
    click.echo(f"# it writes its reports into {reports}: remove that afterwards", err=True)
    click.echo(shlex.join(playbook.argv()))


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


_app_option = click.option("--app", type=AppChoice(), default=None, help="Only this app.")
_print_option = click.option(
    "--print-command", is_flag=True, help="Print the ansible-playbook command; run nothing."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


@click.group("backup")
def backup_group() -> None:
    """Back up the apps with restic, list snapshots, restore them, prove them in a drill.

    The nightly backups themselves are deployed by `fedictl deploy` (playbooks/backup.yml) and run
    on the servers by systemd timers; these commands work on the same repository.
    """


@backup_group.command("run")
@inventory_options
@_app_option
@_print_option
@_json_option
@click.pass_context
def run(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    app: str | None,
    print_command: bool,
    as_json: bool,
) -> None:
    """Back up now: start the backup unit on every host holding the app's data, and wait.

    Exits with ansible-playbook's exit code (non-zero when any host's backup failed), after one
    line per host and app: the snapshots taken, or why it failed.
    """
    inv, vault = _open(inventory_arg, vault_password_file)
    backup.check_app(inv, app)
    with backup.report_dir(keep=print_command) as reports:
        playbook = backup.run_now(inv.path, vault, app, reports)
        if print_command:
            _print_command(playbook, reports)
            return
        result = backup.run_playbook(playbook)
        statuses = backup.read_run_reports(reports)
    if as_json:
        _json({"exit_code": result.exit_code, "hosts": statuses})
    else:
        for line in backup.format_run(statuses, app):
            click.echo(line)
    ctx.exit(result.exit_code)


@backup_group.command("list")
@inventory_options
@_app_option
@_print_option
@_json_option
@click.pass_context
def list_(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    app: str | None,
    print_command: bool,
    as_json: bool,
) -> None:
    """List the snapshots in the repository, one line per app and backup run, with sizes.

    SIZE is what the snapshot holds, ADDED what it added to the repository (after deduplication).
    """
    inv, vault = _open(inventory_arg, vault_password_file)
    backup.check_app(inv, app)
    with backup.report_dir(keep=print_command) as reports:
        playbook = backup.list_snapshots(inv.path, vault, app, reports)
        if print_command:
            _print_command(playbook, reports)
            return
        result = backup.run_playbook(playbook)
        if result.exit_code != 0:
            ctx.exit(result.exit_code)
        runs = backup.group_runs(backup.read_snapshots(reports))
    if as_json:
        _json(runs)
    else:
        for line in backup.format_runs(runs):
            click.echo(line)


@backup_group.command("restore")
@inventory_options
@click.option("--app", type=AppChoice(), required=True, help="The app to restore.")
@click.option(
    "--snapshot",
    default="",
    metavar="ID",
    help="A snapshot id (or prefix) or a run id from `fedictl backup list`; default: the latest.",
)
@click.option(
    "--to",
    "to",
    default="",
    metavar="HOST",
    help="Restore everything onto this inventory host; default: in place (database and app hosts).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Drop a non-empty database and move existing files aside (PATH.pre-restore-TIME).",
)
@_print_option
@_json_option
@click.pass_context
def restore_cmd(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    app: str,
    snapshot: str,
    to: str,
    force: bool,
    print_command: bool,
    as_json: bool,
) -> None:
    """Restore an app: stop it, restore its database into a fresh database, its files and
    configuration with their owner, start it and wait for its health checks.

    Every table's rows and checksum and every file's sha256 are compared with what the backup
    recorded. A non-empty database or existing files are refused unless --force.
    """
    backup.check_snapshot(snapshot)
    inv, vault = _open(inventory_arg, vault_password_file)
    backup.check_app(inv, app)
    backup.check_target(inv, to)
    request = backup.RestoreRequest(app, snapshot=snapshot, to=to, force=force)
    with backup.report_dir(keep=print_command) as reports:
        playbook = backup.restore(inv.path, vault, request, reports)
        if print_command:
            _print_command(playbook, reports)
            return
        result = backup.run_playbook(playbook)
        report = backup.read_restore_report(reports)
    if as_json:
        _json({"exit_code": result.exit_code, "ok": backup.verdict(report), "report": report})
    else:
        for line in backup.format_restore(report):
            click.echo(line)
    ctx.exit(result.exit_code)


@backup_group.command("drill")
@inventory_options
@click.option("--app", type=AppChoice(), required=True, help="The app to drill.")
@click.option(
    "--lab-host",
    default=None,
    metavar="NAME",
    help="Name of the lab host to boot for the drill (default: dr-APP).",
)
@click.option(
    "--to",
    "to",
    default="",
    metavar="HOST",
    help="Drill on this spare inventory host instead of a lab host (its app units are untouched).",
)
@click.option("--keep", is_flag=True, help="Leave the lab host running afterwards.")
@_json_option
@click.pass_context
def drill_cmd(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    app: str,
    lab_host: str | None,
    to: str,
    keep: bool,
    as_json: bool,
) -> None:
    """Prove the latest backup: restore it onto a fresh lab host and compare it with what the
    backup recorded (rows and a checksum per table, sha256 per file). Exit 0 only if all match.

    Lab hosts reach only this machine and its lab network: for a repository elsewhere, drill on a
    spare server of the inventory with --to.
    """
    if to and lab_host:
        raise click.UsageError("give --lab-host or --to, not both")
    inv, vault = _open(inventory_arg, vault_password_file)
    result = backup.drill(
        inv,
        vault,
        app,
        lab_name=lab_host,
        to=to,
        keep=keep,
        echo=lambda m: click.echo(m, err=True),
    )
    if as_json:
        _json({"ok": result.ok, "target": result.target, "report": result.report})
    else:
        for line in backup.format_restore(result.report):
            click.echo(line)
        if result.ok:
            click.echo(f"Drill passed on {result.target}: the backup restores and matches.")
        else:
            click.echo(f"Drill FAILED on {result.target}.", err=True)
            if result.report is None and not to:
                click.echo(
                    "If the repository could not be opened: lab hosts reach only this machine "
                    "and its lab network; drill on a spare inventory host with --to HOST.",
                    err=True,
                )
    ctx.exit(0 if result.ok else 1)
