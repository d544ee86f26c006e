"""The base image every lab host boots from: a debootstrapped trixie, cached as a tarball.

Its Debian mirror is the one this machine's own apt uses (never hard-coded).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from fedictl.errors import LabError
from fedictl.lab._proc import run, tail, write

SUITE = "trixie"
# Bump when the base recipe changes: a new base is built beside the old one, never over it.
BASE_RECIPE = 1
BASE_PACKAGES = (
    "systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,iproute2,sudo,"
    "ca-certificates,curl,procps"
)
# Timers that would grab the dpkg lock or touch disks mid-test; lab hosts have no use for them.
MASKED_UNITS = ("dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer")
# apt's own timers stay enabled (roles may rely on them) but fire far in the future.
DEFERRED_TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")


# --------------------------------------------------------------------------------------------
# The machine's own apt mirror


def _apt_sources(root: Path) -> list[dict[str, str]]:
    """Entries of the machine's apt sources as dicts with Types/URIs/Suites/Components."""
    entries: list[dict[str, str]] = []
    for path in sorted((root / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            entry: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, _, value = line.partition(":")
                entry[key.strip()] = value.strip()
            if entry.get("Enabled", "yes") != "no" and "URIs" in entry:
                entries.append(entry)
    lists = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb":
                entries.append(
                    {"Types": "deb", "URIs": parts[1], "Suites": parts[2],
                     "Components": " ".join(parts[3:])}
                )  # fmt: skip
    return entries


def apt_mirrors(apt_root: Path = Path("/etc/apt")) -> tuple[str, str | None]:
    """(Debian mirror, security mirror or None) from FEDICTL_LAB_MIRROR/… or the machine's apt."""
    mirror = os.environ.get("FEDICTL_LAB_MIRROR")
    security = os.environ.get("FEDICTL_LAB_SECURITY_MIRROR")
    for entry in _apt_sources(apt_root):
        if "deb" not in entry.get("Types", "").split():
            continue
        suites = entry.get("Suites", "").split()
        uri = entry["URIs"].split()[0].rstrip("/")
        if any(s.endswith("-security") for s in suites):
            security = security or uri
        elif "main" in entry.get("Components", "").split() and uri.endswith("/debian"):
            mirror = mirror or uri
    if not mirror:
        raise LabError(
            "cannot find a Debian mirror in this machine's apt sources (/etc/apt/sources.list*); "
            "set FEDICTL_LAB_MIRROR to an http URL of a Debian archive mirror"
        )
    if not mirror.startswith("http://"):
        raise LabError(
            f"the lab's apt proxy caches plain-http mirrors only, and the machine uses {mirror}; "
            "set FEDICTL_LAB_MIRROR to an http URL of a Debian archive mirror"
        )
    if security and not security.startswith("http://"):
        security = None
    return mirror, security


# --------------------------------------------------------------------------------------------


class BaseImage:
    """The base rootfs under ``root``/base and its cached tarball under ``root``/cache."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def path(self) -> Path:
        return self.root / "base" / f"{SUITE}-r{BASE_RECIPE}"

    @property
    def cache(self) -> Path:
        return self.root / "cache" / f"{SUITE}-r{BASE_RECIPE}.tar.zst"

    def ensure(self, rebuild: bool = False, log: Path | None = None) -> float:
        """Make the base rootfs ready (unpack the cache or build it). Returns seconds spent."""
        start = time.monotonic()
        if rebuild:
            shutil.rmtree(self.path, ignore_errors=True)
            self.cache.unlink(missing_ok=True)
        if (self.path / "etc" / "os-release").exists():
            return 0.0
        tmp = self.path.with_name(self.path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.cache.exists():
            run(["tar", "--zstd", "-xpf", str(self.cache), "-C", str(tmp)])
        else:
            self._build(tmp, log or self.root / "logs" / "base-build.log")
        tmp.rename(self.path)
        return time.monotonic() - start

    def _build(self, target: Path, log: Path) -> None:
        mirror, security = apt_mirrors()
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE,
                 str(target), mirror],
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(
                f"building the lab base image failed (debootstrap exit {proc.returncode}); "
                f"full log: {log}\n{tail(log)}"
            )
        configure(target, mirror, security)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache.with_suffix(".partial")
        run(["tar", "--zstd", "-cpf", str(partial), "--numeric-owner", "-C", str(target), "."])
        partial.rename(self.cache)


def _sources_stanza(uri: str, suites: str) -> str:
    return (
        f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def configure(root: Path, mirror: str, security: str | None) -> None:
    """Turn a fresh debootstrap at ``root`` into the lab's base (see docs/lab.md)."""
    stanzas = [_sources_stanza(mirror, f"{SUITE} {SUITE}-updates")]
    if security:
        stanzas.append(_sources_stanza(security, f"{SUITE}-security"))
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    write(root / "etc/apt/sources.list.d/debian.sources", "\n".join(stanzas))
    # No DNS in the lab: names live in /etc/hosts, lookups fail fast.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink():
        resolv.unlink()
    write(resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    (root / "etc/hostname").unlink(missing_ok=True)  # else guests are named after this machine
    write(root / "etc/machine-id", "", 0o444)  # a fresh id each boot
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # each host gets its own host key at `lab up`
    units = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        target = units / unit
        target.unlink(missing_ok=True)
        target.symlink_to("/dev/null")
    for timer in DEFERRED_TIMERS:
        write(
            units / f"{timer}.d" / "fedictl-lab.conf",
            "# fedictl lab: keep the timer enabled but never fire it during tests\n"
            "[Timer]\nOnCalendar=\nOnCalendar=2199-01-01\nRandomizedDelaySec=0\n"
            "Persistent=false\n",
        )
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    for cached in (root / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
