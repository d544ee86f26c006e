"""The forward guard: an nft table that keeps every packet between the bridge and the world here."""

from __future__ import annotations

from fedictl.errors import LabError
from fedictl.lab._proc import run
from fedictl.lab.network import BRIDGE, PROXY_PORT, Network

GUARD_TABLE = "fedictl_lab_guard"


class ForwardGuard:
    def __init__(self, net: Network) -> None:
        self.net = net

    def ruleset(self) -> str:
        """Nothing from the bridge leaves the machine; guests reach only the apt proxy here.

        prerouting rejects (fast, whatever the machine's ip_forward) every packet from the
        bridge that is not for the lab subnet; forward repeats that for routed traffic and drops
        anything routed into the bridge; input lets guests reach only the proxy on this machine.
        """
        return f"""table inet {GUARD_TABLE} {{
  chain prerouting {{
    type filter hook prerouting priority filter - 10; policy accept;
    iifname "{BRIDGE}" ip daddr != {self.net.subnet} counter reject with icmpx type admin-prohibited
    iifname "{BRIDGE}" ip6 daddr != fe80::/10 counter reject with icmpx type admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "{BRIDGE}" oifname "{BRIDGE}" accept
    iifname "{BRIDGE}" counter reject with icmpx type admin-prohibited
    oifname "{BRIDGE}" counter drop
  }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname != "{BRIDGE}" accept
    ct state established,related accept
    tcp dport {PROXY_PORT} ip daddr {self.net.gateway} accept
    meta l4proto {{ icmp, ipv6-icmp }} accept
    counter reject with icmpx type admin-prohibited
  }}
}}
"""

    def present(self) -> bool:
        return run(["nft", "list", "table", "inet", GUARD_TABLE], check=False) != ""

    def ensure(self) -> None:
        """Load (or reload) the table; refuse to go on without it."""
        script = f"table inet {GUARD_TABLE}\ndelete table inet {GUARD_TABLE}\n{self.ruleset()}"
        run(["nft", "-f", "-"], input_text=script)
        if not self.present():
            raise LabError("the lab forward guard (nft table inet fedictl_lab_guard) did not load; "
                           "refusing to boot hosts without it")  # fmt: skip

    def remove(self) -> None:
        if self.present():
            run(["nft", "delete", "table", "inet", GUARD_TABLE], check=False)
