"""Small helpers the lab modules share: run a tool, write a file, ask /proc, wait, probe a port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fedictl.errors import LabError

POLL_S = 0.05


def run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; raise LabError naming the command on failure."""
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def keygen(path: Path, comment: str) -> None:
    """A new ed25519 key pair without a passphrase at ``path`` (and ``path``.pub)."""
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def pid_alive(pid: int, *comms: str) -> bool:
    """True when PID runs one of ``comms`` and is not a zombie (PIDs get reused; a dead nspawn
    lingers). One read of /proc: a process that execs between two reads still counts."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2 :].split()[0]
    return name in {comm[:15] for comm in comms} and state not in ("Z", "X")


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    """Ask ``done`` every 50 ms until it says yes (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def port_open(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ssh_banner(address: str, port: int, timeout: float) -> bool:
    """True once sshd answers with its banner (a listening socket alone is not enough)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout * 3)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False
