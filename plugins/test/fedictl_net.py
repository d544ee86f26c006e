"""Jinja tests for the roles' validation: domain names, IP addresses and networks.

The rules are fedictl's own (fedictl/names.py, loaded from this checkout), so a name `fedictl
validate` accepts is one the roles accept, and no role copies a regular expression into its vars.
  x is fedictl_domain       a fully qualified domain name in lower case (social.example.org)
  x is fedictl_ip_address   an IPv4 or IPv6 address (10.0.0.5, ::1)
  x is fedictl_ip_network   an address with an optional prefix length (10.0.0.0/24, 2001:db8::/32)
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any


@functools.cache
def _names() -> Any:
    path = Path(__file__).resolve().parent.parent.parent / "fedictl" / "names.py"
    spec = importlib.util.spec_from_file_location("fedictl_names", path)
    assert spec is not None and spec.loader is not None  # noqa: S101 (fedictl/ is beside plugins/)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestModule:
    def tests(self) -> dict[str, Any]:
        names = _names()
        return {
            "fedictl_domain": names.is_domain,
            "fedictl_ip_address": names.is_ip_address,
            "fedictl_ip_network": names.is_ip_network,
        }
