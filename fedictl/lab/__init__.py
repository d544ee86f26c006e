"""Disposable Debian 13 lab hosts: systemd-nspawn containers on a private bridge, reached by SSH.

Each host boots a full systemd from an overlay over one cached base image, in its own network
namespace wired to a bridge that exists only on this machine. A forward guard keeps every packet
between the bridge and the world from leaving the machine; guests reach Debian's archive only
through an apt caching proxy bound to the bridge address. See ``docs/lab.md``.

One module a job: ``base`` (the base image and the machine's apt mirror), ``network`` (subnet,
bridge, each host's namespace), ``guard`` (the nft forward guard), ``proxy`` (apt-cacher-ng),
``host`` (a host's record and names), ``etc_hosts``, ``cgroup`` and ``runtime`` (a host's boot
and end); ``core.Lab`` puts them together for the CLI.

This package imports no click and never exits: it raises ``LabError``/``UsageError``.
"""

from __future__ import annotations

from fedictl.lab._proc import pid_alive as _pid_alive
from fedictl.lab.base import (
    BASE_PACKAGES,
    BASE_RECIPE,
    DEFERRED_TIMERS,
    MASKED_UNITS,
    SUITE,
    BaseImage,
    apt_mirrors,
)
from fedictl.lab.core import REQUIRED_TOOLS, SSH_OPTIONS, Lab
from fedictl.lab.etc_hosts import HOSTS_HEADER, hosts_line, update_etc_hosts
from fedictl.lab.guard import GUARD_TABLE, ForwardGuard
from fedictl.lab.host import ALIAS_RE, NAME_RE, OWNER_ENV, Host, parse_aliases, validate_name
from fedictl.lab.network import BRIDGE, DEFAULT_SUBNET, FIRST_HOST_OCTET, PROXY_PORT, Network
from fedictl.lab.proxy import AptProxy
from fedictl.lab.runtime import BOOT_TIMEOUT_S, STOP_TIMEOUT_S, HostRuntime

__all__ = [
    "ALIAS_RE",
    "BASE_PACKAGES",
    "BASE_RECIPE",
    "BOOT_TIMEOUT_S",
    "BRIDGE",
    "DEFAULT_SUBNET",
    "DEFERRED_TIMERS",
    "FIRST_HOST_OCTET",
    "GUARD_TABLE",
    "HOSTS_HEADER",
    "MASKED_UNITS",
    "NAME_RE",
    "OWNER_ENV",
    "PROXY_PORT",
    "REQUIRED_TOOLS",
    "SSH_OPTIONS",
    "STOP_TIMEOUT_S",
    "SUITE",
    "AptProxy",
    "BaseImage",
    "ForwardGuard",
    "Host",
    "HostRuntime",
    "Lab",
    "Network",
    "_pid_alive",
    "apt_mirrors",
    "hosts_line",
    "parse_aliases",
    "update_etc_hosts",
    "validate_name",
]
