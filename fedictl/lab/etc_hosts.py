"""The lab hosts' /etc/hosts (the lab has no DNS): a whole file for a fresh host, and the
upkeep of the hosts already running as others come up or go down."""

from __future__ import annotations

from collections.abc import Iterable

from fedictl.lab.host import Host

HOSTS_HEADER = "# fedictl lab: lab up and down add and remove the lab hosts' lines; others stay\n"


def hosts_line(host: Host) -> str:
    """A lab host's /etc/hosts line: its address, its name, then its aliases."""
    return f"{host.address}\t{' '.join([host.name, *host.aliases])}"


def fresh_etc_hosts(gateway: str, hosts: Iterable[Host]) -> str:
    """The whole /etc/hosts of a host booting now: localhost, the gateway, every lab host."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             f"{gateway}\tlab-gateway"]  # fmt: skip
    return HOSTS_HEADER + "\n".join(lines + [hosts_line(h) for h in hosts]) + "\n"


def update_etc_hosts(text: str, add: Iterable[Host], drop: Iterable[str]) -> str:
    """The /etc/hosts ``text`` of a running lab host after other hosts came up or went down.

    Only the lines whose first name is a host in ``add`` or ``drop`` change (replaced, removed);
    every other line stays as it is, including lines a test or a user edited or added there (a name
    moved to another address, say): booting or stopping an unrelated host must not undo them.
    """
    added = list(add)
    changing = set(drop) | {h.name for h in added}

    def first_name(line: str) -> str | None:
        fields = line.split("#", 1)[0].split()
        return fields[1] if len(fields) > 1 else None

    kept = [line for line in text.splitlines() if first_name(line) not in changing]
    return "\n".join(kept + [hosts_line(h) for h in added]) + "\n"
