"""The apt proxy: apt-cacher-ng with fedictl's own configuration, bound to the bridge address."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from fedictl.errors import LabError
from fedictl.lab._proc import pid_alive, port_open, run, tail, wait_until, write
from fedictl.lab.network import PROXY_PORT, Network

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0  # let it free its port before a next `lab up`


class AptProxy:
    """apt-cacher-ng serving the lab on ``net``'s gateway; its cache, logs and pid in ``root``."""

    def __init__(self, root: Path, net: Network) -> None:
        self.root = root
        self.net = net

    @property
    def pid_file(self) -> Path:
        return self.root / "acng.pid"

    def pid(self) -> int:
        """The running proxy's PID, or 0."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return 0
        return pid if pid_alive(pid, "apt-cacher-ng") else 0

    def ensure(self) -> None:
        if self.pid():
            return
        conf = self.root / "conf"
        for sub in ("cache", "log", "conf"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        upstream = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")
        write(
            conf / "acng.conf",
            f"# fedictl lab apt proxy: bound to the lab bridge only, no Remap- lines\n"
            f"CacheDir: {self.root / 'cache'}\nLogDir: {self.root / 'log'}\n"
            f"Port: {PROXY_PORT}\nBindAddress: {self.net.gateway}\n"
            f"PidFile: {self.pid_file}\nForeGround: 0\nExThreshold: 4\n"
            + (f"Proxy: {upstream}\n" if upstream else ""),
        )
        run(["apt-cacher-ng", "-c", str(conf)])
        if wait_until(
            lambda: bool(self.pid()) and port_open(self.net.gateway, PROXY_PORT, 0.2),
            START_TIMEOUT_S,
        ):
            return
        log = self.root / "log" / "apt-cacher.err"
        raise LabError(
            f"the lab apt proxy (apt-cacher-ng) did not start on {self.net.gateway}:{PROXY_PORT} "
            f"(is another program using that port?); log {log}:\n{tail(log)}"
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(pid, "apt-cacher-ng"), STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)
