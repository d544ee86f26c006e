"""One lab host's life: its overlay over the base, its namespace, its boot, its /etc/hosts, its end.

Each host boots a full systemd (``systemd-nspawn --boot``) from an overlay in
``hosts/NAME/root``, in its own network namespace and its own cgroup.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from fedictl.errors import LabError
from fedictl.lab import cgroup, network
from fedictl.lab._proc import keygen, pid_alive, run, ssh_banner, tail, wait_until, write
from fedictl.lab.etc_hosts import fresh_etc_hosts, update_etc_hosts
from fedictl.lab.host import Host
from fedictl.lab.network import Network

BOOT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


class HostRuntime:
    """Starts and stops lab hosts under ``hosts_dir`` on ``net``, booted from ``base``."""

    def __init__(self, hosts_dir: Path, net: Network, base: Path, key: Path) -> None:
        self.hosts_dir = hosts_dir
        self.net = net
        self.base = base
        self.key = key

    def host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

    def _etc_hosts(self, name: str) -> Path:
        return self.host_dir(name) / "root/etc/hosts"

    def prepare(self, host: Host) -> None:
        """Mount the host's overlay, give it its name, keys and apt proxy, plug its network."""
        hdir = self.host_dir(host.name)
        for sub in ("upper", "work", "root"):
            (hdir / sub).mkdir(parents=True, exist_ok=True)
        root = hdir / "root"
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.base},upperdir={hdir / 'upper'},workdir={hdir / 'work'}",
             str(root)])  # fmt: skip
        write(root / "etc/hostname", host.name + "\n")
        write(root / "root/.ssh/authorized_keys",
              Path(str(self.key) + ".pub").read_text(), 0o600)  # fmt: skip
        write(
            root / "etc/apt/apt.conf.d/01fedictl-lab-proxy",
            f'Acquire::http::Proxy "{self.net.proxy_url}";\n',
        )
        keygen(root / "etc/ssh/ssh_host_ed25519_key", f"root@{host.name}")
        network.plug(self.net, host.name, host.address)

    def write_etc_hosts(self, fresh: list[Host], others: list[Host]) -> None:
        """A whole /etc/hosts for each fresh host; the running ``others`` gain only their lines."""
        text = fresh_etc_hosts(self.net.gateway, others + fresh)
        for host in fresh:
            write(self._etc_hosts(host.name), text)
        self.update_etc_hosts(others, add=fresh, drop=[])

    def update_etc_hosts(self, running: list[Host], add: list[Host], drop: list[str]) -> None:
        for host in running:
            path = self._etc_hosts(host.name)
            if path.is_file():  # its overlay is mounted
                write(path, update_etc_hosts(path.read_text(), add, drop))

    def boot(self, host: Host) -> None:
        """Start the host's nspawn in its own cgroups (no wait); records its PID on ``host``."""
        hdir = self.host_dir(host.name)
        nspawn = [
            "systemd-nspawn", "--boot", f"--machine={host.name}", f"--hostname={host.name}",
            "--register=no", "--keep-unit",
            # The guest's network namespace is its own, so it may manage it: nftables firewalls
            # and fail2ban bans load for real, as on a server.
            "--capability=CAP_NET_ADMIN",
            f"--network-namespace-path=/run/netns/{network.netns(host.name)}",
            "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "-D", str(hdir / "root"),
        ]  # fmt: skip
        # Join this host's own cgroups before exec'ing nspawn, so the guest can be killed as a
        # whole even if nspawn dies (the machine's PID 1 is not systemd).
        argv = cgroup.exec_in(cgroup.host_cgroups(host.name), nspawn)
        with open(hdir / "console.log", "wb") as console:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        host.pid = proc.pid

    def wait_ssh(self, hosts: list[Host]) -> None:
        """Return once every host's sshd answers; raise when one stops or time runs out."""
        pending = {h.name: h for h in hosts}

        def answered() -> bool:
            for name, host in list(pending.items()):
                if ssh_banner(host.address, host.port, 0.3):
                    del pending[name]
                # Asked in one read: the sh that joins the cgroups execs nspawn at any moment.
                elif not pid_alive(host.pid, "systemd-nspawn", "sh"):
                    log = self.host_dir(name) / "console.log"
                    raise LabError(f"lab host {name} stopped while booting; console:\n{tail(log)}")
            return not pending

        if not wait_until(answered, BOOT_TIMEOUT_S):
            names = ", ".join(pending)
            log = self.host_dir(next(iter(pending))) / "console.log"
            raise LabError(
                f"lab host(s) {names} did not answer on SSH within {BOOT_TIMEOUT_S:.0f} s; "
                f"console:\n{tail(log)}"
            )

    def destroy(self, host: Host) -> None:
        """Stop one host cleanly if it can, forcibly if not; remove only what it owned."""
        if pid_alive(host.pid, "systemd-nspawn"):
            os.kill(host.pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(host.pid, "systemd-nspawn"), STOP_TIMEOUT_S)
        for cg in cgroup.host_cgroups(host.name):
            cgroup.kill_cgroup(cg)
        hdir = self.host_dir(host.name)
        root = hdir / "root"
        if os.path.ismount(root):
            run(["umount", str(root)], check=False)
        if os.path.ismount(root):  # still busy: detach now, the kernel frees it when idle
            run(["umount", "-l", str(root)], check=False)
        network.unplug(host.name)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / host.name, ignore_errors=True)
        if not os.path.ismount(root):
            shutil.rmtree(hdir, ignore_errors=True)
