"""``fedictl lab``: disposable Debian 13 hosts to rehearse deploys, upgrades and restores on."""

from __future__ import annotations

import json
import os
import sys

import click
import yaml

from fedictl.lab import Host, Lab, parse_aliases


def _print_hosts(hosts: list[Host], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([h.public() for h in hosts], indent=2))
        return
    if not hosts:
        click.echo("no lab hosts", err=True)
        return
    click.echo(f"{'NAME':<13} {'ADDRESS':<15} {'STATE':<8} ALIASES")
    for h in hosts:
        state = "running" if h.running else "stopped"
        click.echo(f"{h.name:<13} {h.address:<15} {state:<8} {' '.join(h.aliases)}")


@click.group()
def lab() -> None:
    """Local Debian 13 lab hosts (systemd-nspawn, private bridge, SSH). Needs root."""


@lab.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    metavar="HOST=NAME",
    help="Extra /etc/hosts name for a host (e.g. a test domain); repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the hosts as JSON.")
def up(names: tuple[str, ...], aliases: tuple[str, ...], as_json: bool) -> None:
    """Boot lab hosts NAMES in parallel and wait until each answers on SSH."""
    the_lab = Lab()
    click.echo(f"booting {', '.join(names)} ...", err=True)
    hosts = the_lab.up(list(names), parse_aliases(aliases, names))
    _print_hosts(hosts, as_json)


@lab.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_hosts", is_flag=True, help="Stop every lab host.")
def down(names: tuple[str, ...], all_hosts: bool) -> None:
    """Stop lab hosts and remove their overlays, namespaces and cgroups."""
    if bool(names) == all_hosts:
        raise click.UsageError("name the hosts to stop, or give --all")
    stopped = Lab().down(None if all_hosts else list(names))
    click.echo(f"stopped: {', '.join(stopped) or 'nothing'}", err=True)


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the hosts as JSON.")
def list_(as_json: bool) -> None:
    """List lab hosts with their addresses."""
    _print_hosts(Lab().hosts(), as_json)


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, command: tuple[str, ...]) -> None:
    """Open a shell on lab host NAME, or run COMMAND there (after --)."""
    argv = Lab().ssh_argv(name, list(command))
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process with ssh, argv list


@lab.command()
def inventory() -> None:
    """Print an Ansible inventory (YAML) of the running lab hosts."""
    click.echo(yaml.safe_dump(Lab().inventory(), sort_keys=False), nl=False)


@lab.command()
@click.option("--rebuild", is_flag=True, help="Throw the cached base away and build it again.")
def build(rebuild: bool) -> None:
    """Build (or unpack from cache) the Debian 13 base image lab hosts boot from."""
    the_lab = Lab()
    the_lab.check_machine()
    with the_lab.locked():
        click.echo(
            "preparing the lab base image (a first build takes about a minute) ...", err=True
        )
        seconds = the_lab.ensure_base(rebuild=rebuild)
    click.echo(f"base image ready: {the_lab.base} ({seconds:.1f} s)", err=True)
