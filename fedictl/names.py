"""What counts as a domain name and an IP address or network: one definition for the whole project.

``fedictl validate`` checks an inventory with these, and the roles' validation uses the same
functions through the Jinja tests in plugins/test/fedictl_net.py (which load this file), so a
name the CLI accepts is one the roles accept. Standard library only; imports nothing of fedictl.
"""

from __future__ import annotations

import ipaddress
import re

# A label: 1-63 letters, digits and inner hyphens. A domain: at least two labels, lower case, a
# top-level label that starts with a letter and has two characters or more, 253 characters at most.
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{LABEL}\.)+[a-z][a-z0-9-]{{0,61}}[a-z0-9]")


def is_domain(value: object) -> bool:
    return isinstance(value, str) and DOMAIN.fullmatch(value) is not None


def is_ip_address(value: object) -> bool:
    """An IPv4 or IPv6 address (10.0.0.5, ::1), as text."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_ip_network(value: object) -> bool:
    """An address with an optional prefix length (10.0.0.0/24, 10.0.0.5, 2001:db8::/32), as text;
    host bits may be set, as pg_hba.conf and nftables accept them."""
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return False
    return True
