"""A lab host's record (`hosts/NAME/host.json`, as `lab list --json` shows it) and its names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedictl.errors import UsageError
from fedictl.lab._proc import pid_alive, write

OWNER_ENV = "FEDICTL_LAB_OWNER"  # recorded on each host `lab up` starts (scripts/test sets it)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")  # "vh-" + name must fit IFNAMSIZ (15)
ALIAS_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
RECORD = "host.json"


@dataclass
class Host:
    """A lab host as ``lab list --json`` reports it."""

    name: str
    address: str
    user: str
    port: int
    identity_file: str
    aliases: list[str] = field(default_factory=list)
    pid: int = 0
    running: bool = False
    # Who started it (FEDICTL_LAB_OWNER at `lab up`), so that a test run stops only its own hosts.
    owner: str = ""

    def public(self) -> dict[str, object]:
        return asdict(self)


def load_hosts(hosts_dir: Path) -> list[Host]:
    """The hosts recorded under ``hosts_dir``, each marked running or not."""
    out: list[Host] = []
    if not hosts_dir.is_dir():
        return out
    for path in sorted(hosts_dir.glob(f"*/{RECORD}")):
        host = Host(**json.loads(path.read_text()))
        host.running = pid_alive(host.pid, "systemd-nspawn")
        out.append(host)
    return out


def save_host(hosts_dir: Path, host: Host) -> None:
    data = host.public()
    data.pop("running")
    write(hosts_dir / host.name / RECORD, json.dumps(data, indent=2) + "\n", 0o600)


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(
            f"lab host name {name!r} is not usable: use 1-12 characters, lower-case letters, "
            "digits and '-', starting with a letter (it becomes part of a network interface "
            "name, which Linux limits to 15 characters)"
        )


def parse_aliases(values: Iterable[str], names: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``HOST=NAME`` pairs (extra /etc/hosts names, e.g. a test domain) per host."""
    wanted = set(names)
    out: dict[str, list[str]] = {}
    for value in values:
        host, sep, alias = value.partition("=")
        if not sep or host not in wanted:
            raise UsageError(
                f"--alias {value!r}: write HOST=NAME where HOST is one of the hosts being "
                f"started ({', '.join(sorted(wanted))})"
            )
        if not ALIAS_RE.match(alias):
            raise UsageError(f"--alias {value!r}: {alias!r} is not a valid host name")
        out.setdefault(host, []).append(alias)
    return out
