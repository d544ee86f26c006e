"""The lab's private network: its subnet, the bridge on this machine, each host's namespace.

Every host has its own network namespace ``fdl-NAME`` joined to the bridge by a veth pair
(``vh-NAME`` here, ``host0`` inside), a fixed address and a default route via the bridge.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from fedictl.errors import LabError, UsageError
from fedictl.lab._proc import run

BRIDGE = "fdlab0"
DEFAULT_SUBNET = "10.213.0.0/24"
PROXY_PORT = 3142  # the apt proxy's port on the bridge address, the one port guests may reach
FIRST_HOST_OCTET = 10


@dataclass(frozen=True)
class Network:
    subnet: ipaddress.IPv4Network

    @classmethod
    def parse(cls, subnet: str | None = None) -> Network:
        """``subnet``, else FEDICTL_LAB_SUBNET, else the default; a private /24 or larger."""
        try:
            net = ipaddress.IPv4Network(
                subnet or os.environ.get("FEDICTL_LAB_SUBNET", DEFAULT_SUBNET)
            )
        except ValueError as exc:
            raise UsageError(
                f"FEDICTL_LAB_SUBNET: {exc}; use a private /24 such as {DEFAULT_SUBNET}"
            ) from exc
        if not net.is_private or net.prefixlen > 24:
            raise UsageError(
                f"FEDICTL_LAB_SUBNET={net} must be a private network of /24 or larger, "
                f"such as {DEFAULT_SUBNET}"
            )
        return cls(net)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def prefix(self) -> int:
        return self.subnet.prefixlen

    @property
    def proxy_url(self) -> str:
        return f"http://{self.gateway}:{PROXY_PORT}"

    def free_addresses(self, used: set[str], count: int) -> list[str]:
        """The first ``count`` host addresses from ``.10`` upward that are not ``used``."""
        free = [
            str(ip)
            for ip in list(self.subnet.hosts())[FIRST_HOST_OCTET - 1 :]
            if str(ip) not in used
        ]
        if len(free) < count:
            raise LabError(f"no free addresses left in {self.subnet} for {count} more hosts")
        return free[:count]


def netns(name: str) -> str:
    """The network namespace of lab host ``name`` (under /run/netns)."""
    return f"fdl-{name}"


def ensure_bridge(net: Network) -> None:
    gw, prefix = net.gateway, net.prefix
    if run(["ip", "-o", "link", "show", "dev", BRIDGE], check=False) == "":
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
    if f" {gw}/{prefix} " not in addrs:
        run(["ip", "addr", "add", f"{gw}/{prefix}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge() -> None:
    run(["ip", "link", "del", BRIDGE], check=False)


def plug(net: Network, name: str, address: str) -> None:
    """A namespace for host ``name`` with ``address`` on the bridge and a route via it."""
    ns = netns(name)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", f"vh-{name}", "type", "veth", "peer", "name", "host0", "netns", ns])
    run(["ip", "link", "set", f"vh-{name}", "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "addr", "add", f"{address}/{net.prefix}", "dev", "host0"])
    run(["ip", "-n", ns, "link", "set", "host0", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", net.gateway])


def unplug(name: str) -> None:
    """Remove what ``plug`` made for host ``name``, whatever of it exists."""
    run(["ip", "netns", "del", netns(name)], check=False)
    run(["ip", "link", "del", f"vh-{name}"], check=False)
