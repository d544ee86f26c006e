"""``fedictl upgrade APP --to VERSION -i INV``: the upgrade playbook, then the new pin."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from fedictl import inventory, paths, runner, upgrade
from fedictl.commands.options import PathArg, inventory_options, load_valid, pattern_option


@click.command("upgrade")
@click.argument("app", metavar="APP")
@click.option("--to", "target", default=None, metavar="vX.Y.Z", help="The release to move to.")
@click.option(
    "--list",
    "show_list",
    is_flag=True,
    help="Show the pinned release, the newest known patch of its line and the next line; upgrade "
    "nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="With --list: as JSON.")
@click.option(
    "--unknown-line",
    is_flag=True,
    help="Go ahead with a release on a line fedictl does not know (you read upstream's notes).",
)
@inventory_options
@click.option(
    "--release-archive",
    type=PathArg(dir_okay=False, path_type=Path),
    default=None,
    help="Deploy this prebuilt release archive instead of building from upstream's tag.",
)
@click.option(
    "--release-checksum",
    metavar="sha256:HEX",
    default=None,
    help="The archive's checksum (recommended; checked before it is unpacked).",
)
@click.option("--check", is_flag=True, help="Dry run: ansible-playbook --check.")
@click.option(
    "--limit", metavar="HOSTS", callback=pattern_option, help="Only these hosts (--limit)."
)
@click.option(
    "--print-command", is_flag=True, help="Print the ansible-playbook command; run nothing."
)
@click.pass_context
def upgrade_cmd(
    ctx: click.Context,
    app: str,
    target: str | None,
    show_list: bool,
    as_json: bool,
    unknown_line: bool,
    inventory_arg: str,
    vault_password_file: Path | None,
    release_archive: Path | None,
    release_checksum: str | None,
    check: bool,
    limit: str | None,
    print_command: bool,
) -> None:
    """Upgrade APP to a newer release, safely.

    On each host: requirement checks, a verified database backup, the new release beside the
    running one, pre-deployment migrations, the switch, a health gate through nginx over TLS, then
    post-deployment migrations; if the gate fails, the previous release is put back and the run
    fails saying what happened. After a successful run the inventory pins the new version.
    """
    upgrade.check_app(app)
    if show_list == (target is not None):
        raise click.UsageError("give --to vX.Y.Z to upgrade, or --list to see what is known")
    inv = load_valid(inventory_arg, vault_password_file, "; no host was contacted")
    apps: dict[str, Any] = next(
        (h["fedictl_apps"] for h in inv.hostvars.values() if h.get("fedictl_apps")), {}
    )
    if show_list:
        known = upgrade.listing(app, apps)
        click.echo(
            json.dumps(known, indent=1) if as_json else "\n".join(upgrade.listing_lines(known))
        )
        return
    assert target is not None  # noqa: S101 (the check above)
    plan = upgrade.plan(app, target, apps, release_archive, release_checksum, unknown_line)
    deployment = runner.Deployment(
        inventory=inv.path,
        vault_password_file=inventory.password_file_for(inv.path, vault_password_file),
        check=check,
        limit=limit,
        extra=["--extra-vars", json.dumps(plan.extra_vars())],
        playbook_name="playbooks/upgrade.yml",
    )
    if print_command:
        click.echo(f"# in {paths.project_root()}", err=True)
        click.echo(shlex.join(deployment.argv()))
        return
    if plan.current == plan.target:
        click.echo(f"{app} is pinned at {target} already; checking the hosts run it.")
    result = runner.run(deployment)
    for line in runner.format_summary(result):
        click.echo(line)
    if result.exit_code == 0 and not check:
        main_vars = inv.path / inventory.MAIN
        if upgrade.pin(main_vars, plan):
            click.echo(f"Pinned {app} {target} in {main_vars}.")
    ctx.exit(result.exit_code)
