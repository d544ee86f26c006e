"""Each lab host's own cgroup (``fedictl-lab/NAME``), so that it can be killed whole even if its
nspawn dies (this machine's PID 1 need not be systemd)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from fedictl.lab._proc import wait_until

CGROUP_FS = Path("/sys/fs/cgroup")
LAB_CGROUP = "fedictl-lab"
KILL_TIMEOUT_S = 10.0
# sh joins the cgroups named before "--", then execs the command after it.
_JOIN = (
    'for cg; do [ "$cg" = -- ] && break; echo $$ > "$cg/cgroup.procs"; done; '
    'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
)


def _lab_roots() -> list[Path]:
    if (CGROUP_FS / "cgroup.controllers").exists():  # pure cgroup v2
        return [CGROUP_FS / LAB_CGROUP]
    return [p / LAB_CGROUP for p in (CGROUP_FS / "systemd", CGROUP_FS / "unified") if p.is_dir()]


def host_cgroups(name: str) -> list[Path]:
    """The cgroup directories of lab host ``name`` (one per mounted hierarchy)."""
    return [root / name for root in _lab_roots()]


def exec_in(cgroups: list[Path], argv: list[str]) -> list[str]:
    """An argv that joins ``cgroups`` (made if missing) and then execs ``argv``."""
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    return ["sh", "-c", _JOIN, "sh", *[str(c) for c in cgroups], "--", *argv]


def kill_cgroup(cg: Path) -> None:
    """Kill everything left in a host's cgroup, then remove its directories bottom-up."""
    if not cg.is_dir():
        return
    kill = cg / "cgroup.kill"

    def emptied() -> bool:
        pids = _cgroup_pids(cg)
        if not pids:
            return True
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return False

    wait_until(emptied, KILL_TIMEOUT_S)
    for dirpath, _dirs, _files in sorted(os.walk(cg), key=lambda t: -t[0].count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def remove_lab_roots() -> None:
    """Remove the (empty) ``fedictl-lab`` cgroups once no host is left."""
    for root in _lab_roots():
        with contextlib.suppress(OSError):
            os.rmdir(root)


def _cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    for procs in cg.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids
