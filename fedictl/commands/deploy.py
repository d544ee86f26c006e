"""``fedictl deploy -i INV``: validate, then run ansible-playbook and summarise per host."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from fedictl import inventory, paths, runner
from fedictl.commands.options import (
    AppChoice,
    PathArg,
    inventory_options,
    load_valid,
    pattern_option,
)
from fedictl.errors import UsageError


@click.command("deploy", context_settings={"ignore_unknown_options": False})
@inventory_options
@click.option(
    "--app",
    type=AppChoice(),
    default=None,
    help="Run only this app's playbook (playbooks/APP.yml) instead of site.yml.",
)
@click.option("--check", is_flag=True, help="Dry run: ansible-playbook --check.")
@click.option("--diff", is_flag=True, help="Show file changes: ansible-playbook --diff.")
@click.option(
    "--limit", metavar="HOSTS", callback=pattern_option, help="Only these hosts (--limit)."
)
@click.option("--tags", metavar="TAGS", callback=pattern_option, help="Only these tags (--tags).")
@click.option(
    "--print-command", is_flag=True, help="Print the ansible-playbook command; run nothing."
)
@click.argument("ansible_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ANSIBLE_ARGS]")
@click.pass_context
@click.option(
    "--summary-json",
    type=PathArg(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the per-host summary as JSON to this file (for scripts and CI).",
)
def deploy(
    ctx: click.Context,
    inventory_arg: str,
    vault_password_file: Path | None,
    app: str | None,
    check: bool,
    diff: bool,
    limit: str | None,
    tags: str | None,
    print_command: bool,
    summary_json: Path | None,
    ansible_args: tuple[str, ...],
) -> None:
    """Validate the inventory, then run playbooks/site.yml (or the app's playbook).

    Nothing touches a host unless the whole inventory is valid. Exits with ansible-playbook's
    exit code, after a per-host summary (ok/changed/failed/unreachable).
    """
    inv = load_valid(inventory_arg, vault_password_file, "; no host was contacted")
    if app is not None and app not in inv.enabled_apps():
        raise UsageError(
            f"--app {app}: {app} is not enabled in {inv.path}; fix: set "
            f"fedictl_apps.{app}.enabled: true, run `fedictl secrets ensure`"
        )
    deployment = runner.Deployment(
        inventory=inv.path,
        vault_password_file=inventory.password_file_for(inv.path, vault_password_file),
        app=app,
        check=check,
        diff=diff,
        limit=limit,
        tags=tags,
        extra=list(ansible_args),
    )
    if print_command:
        click.echo(f"# in {paths.project_root()}", err=True)
        click.echo(shlex.join(deployment.argv()))
        return
    result = runner.run(deployment)
    if summary_json is not None:
        summary_json.write_text(
            json.dumps({"exit_code": result.exit_code, "hosts": result.summary})
        )
    for line in runner.format_summary(result):
        click.echo(line)
    ctx.exit(result.exit_code)
