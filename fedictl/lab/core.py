"""The lab as the CLI sees it: its state directory, one operation at a time, and the operations
(build, up, down, list, ssh, inventory) put together from the base image, the network, the forward
guard, the apt proxy and the hosts' runtime."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from fedictl.errors import LabError, MissingToolError, UsageError
from fedictl.lab import cgroup, network
from fedictl.lab._proc import keygen
from fedictl.lab.base import BaseImage
from fedictl.lab.guard import ForwardGuard
from fedictl.lab.host import OWNER_ENV, Host, load_hosts, save_host, validate_name
from fedictl.lab.network import Network
from fedictl.lab.proxy import AptProxy
from fedictl.lab.runtime import HostRuntime
from fedictl.paths import lab_dir

SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
)  # fmt: skip
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "ip": "iproute2",
    "nft": "nftables",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "zstd": "zstd",
    "apt-cacher-ng": "apt-cacher-ng",
}


class Lab:
    """Lab state under ``root`` (default ``/var/lib/fedictl/lab``)."""

    def __init__(self, root: Path | None = None, subnet: str | None = None) -> None:
        self.root = root or lab_dir()
        self.net = Network.parse(subnet)
        self.image = BaseImage(self.root)
        self.guard = ForwardGuard(self.net)
        self.proxy = AptProxy(self.root / "proxy", self.net)
        self.runtime = HostRuntime(self.hosts_dir, self.net, self.base, self.key)

    # ---- paths
    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def base(self) -> Path:
        return self.image.path

    @property
    def base_cache(self) -> Path:
        return self.image.cache

    @property
    def proxy_dir(self) -> Path:
        return self.proxy.root

    # ---- preconditions
    def check_machine(self) -> None:
        if os.geteuid() != 0:
            raise LabError(
                "fedictl lab needs root (it creates network namespaces, a bridge and overlay "
                "mounts): run it as root, e.g. `sudo fedictl lab ...`"
            )
        missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
        if missing:
            raise MissingToolError(
                "fedictl lab needs programs that are not installed: "
                f"apt-get install {' '.join(missing)}  (or run scripts/setup)"
            )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One lab operation at a time (concurrent molecule scenarios share the lab)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        with open(self.root / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure_key(self) -> None:
        if not self.key.exists():
            keygen(self.key, "fedictl-lab")
        self.key.chmod(0o600)

    def ensure_base(self, rebuild: bool = False, log: Path | None = None) -> float:
        """Make the base rootfs ready (unpack the cache or build it). Returns seconds spent."""
        if rebuild and any(h.running for h in self.hosts()):
            raise LabError("cannot rebuild the base image while lab hosts use it: "
                           "run `fedictl lab down --all` first")  # fmt: skip
        return self.image.ensure(rebuild=rebuild, log=log)

    # ---- network: bridge, forward guard, apt proxy
    def ensure_network(self) -> None:
        network.ensure_bridge(self.net)
        self.guard.ensure()
        self.proxy.ensure()

    def guard_ruleset(self) -> str:
        return self.guard.ruleset()

    def teardown_network(self) -> None:
        """Remove what ensure_network made (only when no host is left)."""
        self.proxy.stop()
        self.guard.remove()
        network.remove_bridge()
        cgroup.remove_lab_roots()

    # ---- hosts
    def hosts(self) -> list[Host]:
        return load_hosts(self.hosts_dir)

    def get(self, name: str) -> Host:
        for host in self.hosts():
            if host.name == name:
                return host
        raise UsageError(f"no lab host named {name!r}; `fedictl lab list` shows the hosts")

    def up(self, names: list[str], aliases: dict[str, list[str]] | None = None) -> list[Host]:
        """Boot hosts in parallel and wait until each answers on SSH."""
        if not names:
            raise UsageError("name at least one lab host, e.g. `fedictl lab up web1`")
        for name in names:
            validate_name(name)
        if len(set(names)) != len(names):
            raise UsageError("each lab host name may be given once")
        aliases = aliases or {}
        self.check_machine()
        with self.locked():
            existing = {h.name: h for h in self.hosts()}
            for name in names:  # left behind by a run that ended (e.g. the machine rebooted)
                if name in existing and not existing[name].running:
                    self.runtime.destroy(existing.pop(name))
            taken = [n for n in names if n in existing]
            if taken:
                raise UsageError(
                    f"lab host name(s) already taken: {', '.join(taken)}; pick other names or "
                    f"run `fedictl lab down {' '.join(taken)}` first"
                )
            self.ensure_key()
            self.ensure_base()
            self.ensure_network()
            owner = os.environ.get(OWNER_ENV, "")
            addresses = self.net.free_addresses({h.address for h in self.hosts()}, len(names))
            hosts = [
                Host(name, addr, "root", 22, str(self.key), aliases.get(name, []), owner=owner)
                for name, addr in zip(names, addresses, strict=True)
            ]
            try:
                for host in hosts:
                    self.runtime.prepare(host)
                    save_host(self.hosts_dir, host)
                self.runtime.write_etc_hosts(hosts, [h for h in existing.values() if h.running])
                for host in hosts:
                    self.runtime.boot(host)
                    save_host(self.hosts_dir, host)
                self.runtime.wait_ssh(hosts)
            except BaseException:
                for host in hosts:
                    self.runtime.destroy(host)
                raise
            for host in hosts:
                host.running = True
            return hosts

    def down(self, names: list[str] | None) -> list[str]:
        """Stop the named hosts (all when ``names`` is None) and remove what they used."""
        self.check_machine()
        with self.locked():
            known = {h.name: h for h in self.hosts()}
            if names is None:
                targets = list(known.values())
            else:
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise UsageError(f"no lab host named {', '.join(unknown)}; "
                                     "`fedictl lab list` shows the hosts")  # fmt: skip
                targets = [known[n] for n in names]
            for host in targets:
                self.runtime.destroy(host)
            remaining = [h for h in self.hosts() if h.running]
            self.runtime.update_etc_hosts(remaining, add=[], drop=[h.name for h in targets])
            if not self.hosts():
                self.teardown_network()
            return [h.name for h in targets]

    # ---- access
    def ssh_argv(self, name: str, command: list[str]) -> list[str]:
        host = self.get(name)
        if not host.running:
            raise LabError(
                f"lab host {name} is not running; `fedictl lab down {name}` cleans it up"
            )
        return ["ssh", "-i", host.identity_file, *SSH_OPTIONS, "-p", str(host.port),
                f"{host.user}@{host.address}", *command]  # fmt: skip

    def inventory(self) -> dict[str, object]:
        """An Ansible inventory (YAML-ready dict) of the running lab hosts."""
        hosts = {
            h.name: {
                "ansible_host": h.address,
                "ansible_user": h.user,
                "ansible_port": h.port,
                "ansible_ssh_private_key_file": h.identity_file,
                "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
                "ansible_python_interpreter": "/usr/bin/python3",
            }
            for h in self.hosts()
            if h.running
        }
        return {"all": {"children": {"lab": {"hosts": hosts}}}}
