"""Disposable Debian 13 lab hosts: systemd-nspawn containers on a private bridge, reached by SSH.

Each host boots a full systemd from an overlay over one cached base image, in its own network
namespace wired to a bridge that exists only on this machine. A forward guard keeps every packet
between the bridge and the world from leaving the machine; guests reach Debian's archive only
through an apt caching proxy bound to the bridge address. See ``docs/lab.md``.

This module imports no click and never exits: it raises ``LabError``/``UsageError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedictl.errors import LabError, MissingToolError, UsageError
from fedictl.paths import lab_dir

SUITE = "trixie"
# Bump when the base recipe changes: a new base is built beside the old one, never over it.
BASE_RECIPE = 1
BRIDGE = "fdlab0"
GUARD_TABLE = "fedictl_lab_guard"
DEFAULT_SUBNET = "10.213.0.0/24"
PROXY_PORT = 3142
FIRST_HOST_OCTET = 10
OWNER_ENV = "FEDICTL_LAB_OWNER"  # recorded on each host `lab up` starts (scripts/test sets it)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")  # "vh-" + name must fit IFNAMSIZ (15)
ALIAS_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
BASE_PACKAGES = (
    "systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,iproute2,sudo,"
    "ca-certificates,curl,procps"
)
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
# Timers that would grab the dpkg lock or touch disks mid-test; lab hosts have no use for them.
MASKED_UNITS = ("dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer")
# apt's own timers stay enabled (roles may rely on them) but fire far in the future.
DEFERRED_TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
BOOT_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Host:
    """A lab host as ``lab list --json`` reports it."""

    name: str
    address: str
    user: str
    port: int
    identity_file: str
    aliases: list[str] = field(default_factory=list)
    pid: int = 0
    running: bool = False
    # Who started it (FEDICTL_LAB_OWNER at `lab up`), so that a test run stops only its own hosts.
    owner: str = ""

    def public(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Network:
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def prefix(self) -> int:
        return self.subnet.prefixlen

    @property
    def proxy_url(self) -> str:
        return f"http://{self.gateway}:{PROXY_PORT}"


# --------------------------------------------------------------------------------------------
# Small helpers


def _run(argv: list[str], *, input_text: str | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; raise LabError naming the command on failure."""
    proc = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _pid_alive(pid: int, *comms: str) -> bool:
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


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(
            f"lab host name {name!r} is not usable: use 1-12 characters, lower-case letters, "
            "digits and '-', starting with a letter (it becomes part of a network interface "
            "name, which Linux limits to 15 characters)"
        )


def parse_aliases(values: Iterable[str], names: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``HOST=NAME`` pairs (extra /etc/hosts names, e.g. a test domain) per host."""
    wanted = set(names)
    out: dict[str, list[str]] = {}
    for value in values:
        host, sep, alias = value.partition("=")
        if not sep or host not in wanted:
            raise UsageError(
                f"--alias {value!r}: write HOST=NAME where HOST is one of the hosts being "
                f"started ({', '.join(sorted(wanted))})"
            )
        if not ALIAS_RE.match(alias):
            raise UsageError(f"--alias {value!r}: {alias!r} is not a valid host name")
        out.setdefault(host, []).append(alias)
    return out


# --------------------------------------------------------------------------------------------
# The machine's own apt mirror (never hard-coded: taken from its apt configuration)


HOSTS_HEADER = "# fedictl lab: lab up and down add and remove the lab hosts' lines; others stay\n"


def hosts_line(host: Host) -> str:
    """A lab host's /etc/hosts line: its address, its name, then its aliases."""
    return f"{host.address}\t{' '.join([host.name, *host.aliases])}"


def update_etc_hosts(text: str, add: Iterable[Host], drop: Iterable[str]) -> str:
    """The /etc/hosts ``text`` of a running lab host after other hosts came up or went down.

    Only the lines whose first name is a host in ``add`` or ``drop`` change (replaced, removed);
    every other line stays as it is, including lines a test or a user edited or added there (a name
    moved to another address, say): booting or stopping an unrelated host must not undo them.
    """
    added = list(add)
    changing = set(drop) | {h.name for h in added}

    def first_name(line: str) -> str | None:
        fields = line.split("#", 1)[0].split()
        return fields[1] if len(fields) > 1 else None

    kept = [line for line in text.splitlines() if first_name(line) not in changing]
    return "\n".join(kept + [hosts_line(h) for h in added]) + "\n"


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


class Lab:
    """Lab state under ``root`` (default ``/var/lib/fedictl/lab``)."""

    def __init__(self, root: Path | None = None, subnet: str | None = None) -> None:
        self.root = root or lab_dir()
        try:
            net = ipaddress.IPv4Network(
                subnet or os.environ.get("FEDICTL_LAB_SUBNET", DEFAULT_SUBNET)
            )
        except ValueError as exc:
            raise UsageError(
                f"FEDICTL_LAB_SUBNET: {exc}; use a private /24 such as {DEFAULT_SUBNET}"
            ) from exc
        if not net.is_private or net.prefixlen > 24:
            raise UsageError(
                f"FEDICTL_LAB_SUBNET={net} must be a private network of /24 or larger, "
                f"such as {DEFAULT_SUBNET}"
            )
        self.net = Network(net)

    # ---- paths
    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def base(self) -> Path:
        return self.root / "base" / f"{SUITE}-r{BASE_RECIPE}"

    @property
    def base_cache(self) -> Path:
        return self.root / "cache" / f"{SUITE}-r{BASE_RECIPE}.tar.zst"

    @property
    def proxy_dir(self) -> Path:
        return self.root / "proxy"

    def _host_dir(self, name: str) -> Path:
        return self.hosts_dir / name

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

    # ---- SSH key
    def ensure_key(self) -> None:
        if not self.key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fedictl-lab",
                  "-f", str(self.key)])  # fmt: skip
        self.key.chmod(0o600)

    # ---- base image
    def ensure_base(self, rebuild: bool = False, log: Path | None = None) -> float:
        """Make the base rootfs ready (unpack the cache or build it). Returns seconds spent."""
        start = time.monotonic()
        if rebuild:
            if any(h.running for h in self.hosts()):
                raise LabError("cannot rebuild the base image while lab hosts use it: "
                               "run `fedictl lab down --all` first")  # fmt: skip
            shutil.rmtree(self.base, ignore_errors=True)
            self.base_cache.unlink(missing_ok=True)
        if (self.base / "etc" / "os-release").exists():
            return 0.0
        tmp = self.base.with_name(self.base.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.base_cache.exists():
            _run(["tar", "--zstd", "-xpf", str(self.base_cache), "-C", str(tmp)])
        else:
            self._build_base(tmp, log or self.root / "logs" / "base-build.log")
        tmp.rename(self.base)
        return time.monotonic() - start

    def _build_base(self, target: Path, log: Path) -> None:
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
                f"full log: {log}\n{_tail(log)}"
            )
        self._configure_base(target, mirror, security)
        self.base_cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self.base_cache.with_suffix(".partial")
        _run(["tar", "--zstd", "-cpf", str(partial), "--numeric-owner", "-C", str(target), "."])
        partial.rename(self.base_cache)

    @staticmethod
    def _configure_base(root: Path, mirror: str, security: str | None) -> None:
        stanzas = [
            f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ]
        if security:
            stanzas.append(
                f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            )
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        _write(root / "etc/apt/sources.list.d/debian.sources", "\n".join(stanzas))
        # No DNS in the lab: names live in /etc/hosts, lookups fail fast.
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        _write(resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        (root / "etc/hostname").unlink(missing_ok=True)  # else guests are named after this machine
        _write(root / "etc/machine-id", "", 0o444)  # a fresh id each boot
        (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # each host gets its own host key at `lab up`
        units = root / "etc/systemd/system"
        for unit in MASKED_UNITS:
            target = units / unit
            target.unlink(missing_ok=True)
            target.symlink_to("/dev/null")
        for timer in DEFERRED_TIMERS:
            _write(
                units / f"{timer}.d" / "fedictl-lab.conf",
                "# fedictl lab: keep the timer enabled but never fire it during tests\n"
                "[Timer]\nOnCalendar=\nOnCalendar=2199-01-01\nRandomizedDelaySec=0\n"
                "Persistent=false\n",
            )
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        for cached in (root / "var/cache/apt/archives").glob("*.deb"):
            cached.unlink()

    # ---- network: bridge, forward guard, apt proxy
    def ensure_network(self) -> None:
        gw, prefix = self.net.gateway, self.net.prefix
        if _run(["ip", "-o", "link", "show", "dev", BRIDGE], check=False) == "":
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        addrs = _run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE])
        if f" {gw}/{prefix} " not in addrs:
            _run(["ip", "addr", "add", f"{gw}/{prefix}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        self._ensure_guard()
        self._ensure_proxy()

    def guard_ruleset(self) -> str:
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

    def _guard_present(self) -> bool:
        return _run(["nft", "list", "table", "inet", GUARD_TABLE], check=False) != ""

    def _ensure_guard(self) -> None:
        script = (
            f"table inet {GUARD_TABLE}\ndelete table inet {GUARD_TABLE}\n{self.guard_ruleset()}"
        )
        _run(["nft", "-f", "-"], input_text=script)
        if not self._guard_present():
            raise LabError("the lab forward guard (nft table inet fedictl_lab_guard) did not load; "
                           "refusing to boot hosts without it")  # fmt: skip

    def _proxy_pid(self) -> int:
        try:
            pid = int((self.proxy_dir / "acng.pid").read_text().strip())
        except (OSError, ValueError):
            return 0
        return pid if _pid_alive(pid, "apt-cacher-ng") else 0

    def _ensure_proxy(self) -> None:
        if self._proxy_pid():
            return
        conf = self.proxy_dir / "conf"
        for sub in ("cache", "log", "conf"):
            (self.proxy_dir / sub).mkdir(parents=True, exist_ok=True)
        upstream = os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")
        _write(
            conf / "acng.conf",
            f"# fedictl lab apt proxy: bound to the lab bridge only, no Remap- lines\n"
            f"CacheDir: {self.proxy_dir / 'cache'}\nLogDir: {self.proxy_dir / 'log'}\n"
            f"Port: {PROXY_PORT}\nBindAddress: {self.net.gateway}\n"
            f"PidFile: {self.proxy_dir / 'acng.pid'}\nForeGround: 0\nExThreshold: 4\n"
            + (f"Proxy: {upstream}\n" if upstream else ""),
        )
        _run(["apt-cacher-ng", "-c", str(conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proxy_pid() and _port_open(self.net.gateway, PROXY_PORT, 0.2):
                return
            time.sleep(0.05)
        log = self.proxy_dir / "log" / "apt-cacher.err"
        raise LabError(
            f"the lab apt proxy (apt-cacher-ng) did not start on {self.net.gateway}:{PROXY_PORT} "
            f"(is another program using that port?); log {log}:\n{_tail(log)}"
        )

    def teardown_network(self) -> None:
        """Remove what ensure_network made (only when no host is left)."""
        pid = self._proxy_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5  # let it free its port before a next `lab up`
            while _pid_alive(pid, "apt-cacher-ng") and time.monotonic() < deadline:
                time.sleep(0.05)
        (self.proxy_dir / "acng.pid").unlink(missing_ok=True)
        if self._guard_present():
            _run(["nft", "delete", "table", "inet", GUARD_TABLE], check=False)
        _run(["ip", "link", "del", BRIDGE], check=False)
        for parent in {cg.parent for cg in self._cgroups("x")}:
            with contextlib.suppress(OSError):
                parent.rmdir()

    # ---- hosts
    def hosts(self) -> list[Host]:
        out: list[Host] = []
        if not self.hosts_dir.is_dir():
            return out
        for path in sorted(self.hosts_dir.glob("*/host.json")):
            host = Host(**json.loads(path.read_text()))
            host.running = _pid_alive(host.pid, "systemd-nspawn")
            out.append(host)
        return out

    def get(self, name: str) -> Host:
        for host in self.hosts():
            if host.name == name:
                return host
        raise UsageError(f"no lab host named {name!r}; `fedictl lab list` shows the hosts")

    def _free_addresses(self, count: int) -> list[str]:
        used = {h.address for h in self.hosts()}
        free = [
            str(ip)
            for ip in list(self.net.subnet.hosts())[FIRST_HOST_OCTET - 1 :]
            if str(ip) not in used
        ]
        if len(free) < count:
            raise LabError(f"no free addresses left in {self.net.subnet} for {count} more hosts")
        return free[:count]

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
                    self._destroy(existing.pop(name))
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
            hosts = [
                Host(name, addr, "root", 22, str(self.key), aliases.get(name, []), owner=owner)
                for name, addr in zip(names, self._free_addresses(len(names)), strict=True)
            ]
            started: list[Host] = []
            try:
                for host in hosts:
                    self._prepare(host)
                    self._save(host)
                self._write_etc_hosts(hosts, [h for h in existing.values() if h.running])
                for host in hosts:
                    self._boot(host)
                    started.append(host)
                    self._save(host)
                self._wait_ssh(hosts)
            except BaseException:
                for host in hosts:
                    self._destroy(host)
                raise
            for host in hosts:
                host.running = True
            return hosts

    def _save(self, host: Host) -> None:
        data = host.public()
        data.pop("running")
        _write(self._host_dir(host.name) / "host.json", json.dumps(data, indent=2) + "\n", 0o600)

    def _netns(self, name: str) -> str:
        return f"fdl-{name}"

    def _cgroups(self, name: str) -> list[Path]:
        fs = Path("/sys/fs/cgroup")
        if (fs / "cgroup.controllers").exists():  # pure cgroup v2
            return [fs / "fedictl-lab" / name]
        return [p / "fedictl-lab" / name for p in (fs / "systemd", fs / "unified") if p.is_dir()]

    def _prepare(self, host: Host) -> None:
        hdir = self._host_dir(host.name)
        for sub in ("upper", "work", "root"):
            (hdir / sub).mkdir(parents=True, exist_ok=True)
        root = hdir / "root"
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={self.base},upperdir={hdir / 'upper'},workdir={hdir / 'work'}",
              str(root)])  # fmt: skip
        _write(root / "etc/hostname", host.name + "\n")
        _write(root / "root/.ssh/authorized_keys",
               Path(str(self.key) + ".pub").read_text(), 0o600)  # fmt: skip
        _write(
            root / "etc/apt/apt.conf.d/01fedictl-lab-proxy",
            f'Acquire::http::Proxy "{self.net.proxy_url}";\n',
        )
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
              "-f", str(root / "etc/ssh/ssh_host_ed25519_key")])  # fmt: skip
        ns = self._netns(host.name)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", f"vh-{host.name}", "type", "veth",
              "peer", "name", "host0", "netns", ns])  # fmt: skip
        _run(["ip", "link", "set", f"vh-{host.name}", "master", BRIDGE, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{host.address}/{self.net.prefix}", "dev", "host0"])
        _run(["ip", "-n", ns, "link", "set", "host0", "up"])
        _run(["ip", "-n", ns, "route", "add", "default", "via", self.net.gateway])

    def _write_etc_hosts(self, fresh: list[Host], others: list[Host]) -> None:
        """A whole /etc/hosts for each fresh host; the running ``others`` gain only their lines."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.net.gateway}\tlab-gateway"]  # fmt: skip
        text = HOSTS_HEADER + "\n".join(lines + [hosts_line(h) for h in others + fresh]) + "\n"
        for host in fresh:
            _write(self._host_dir(host.name) / "root/etc/hosts", text)
        self._update_etc_hosts(others, add=fresh, drop=[])

    def _update_etc_hosts(self, running: list[Host], add: list[Host], drop: list[str]) -> None:
        for host in running:
            path = self._host_dir(host.name) / "root/etc/hosts"
            if path.is_file():  # its overlay is mounted
                _write(path, update_etc_hosts(path.read_text(), add, drop))

    def _boot(self, host: Host) -> None:
        hdir = self._host_dir(host.name)
        cgroups = self._cgroups(host.name)
        for cg in cgroups:
            cg.mkdir(parents=True, exist_ok=True)
        nspawn = [
            "systemd-nspawn", "--boot", f"--machine={host.name}", f"--hostname={host.name}",
            "--register=no", "--keep-unit",
            # The guest's network namespace is its own, so it may manage it: nftables firewalls
            # and fail2ban bans load for real, as on a server.
            "--capability=CAP_NET_ADMIN",
            f"--network-namespace-path=/run/netns/{self._netns(host.name)}",
            "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "-D", str(hdir / "root"),
        ]  # fmt: skip
        # Join this host's own cgroups before exec'ing nspawn, so the guest can be killed as a
        # whole even if nspawn dies (the machine's PID 1 is not systemd).
        joiner = 'for cg; do [ "$cg" = -- ] && break; echo $$ > "$cg/cgroup.procs"; done; '
        joiner += 'while [ "$1" != -- ]; do shift; done; shift; exec "$@"'
        argv = ["sh", "-c", joiner, "sh", *[str(c) for c in cgroups], "--", *nspawn]
        with open(hdir / "console.log", "wb") as console:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        host.pid = proc.pid

    def _wait_ssh(self, hosts: list[Host]) -> None:
        pending = {h.name: h for h in hosts}
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while pending:
            for name, host in list(pending.items()):
                if _ssh_banner(host.address, host.port, 0.3):
                    del pending[name]
                # Asked in one read: the sh that joins the cgroups execs nspawn at any moment.
                elif not _pid_alive(host.pid, "systemd-nspawn", "sh"):
                    log = self._host_dir(name) / "console.log"
                    raise LabError(f"lab host {name} stopped while booting; console:\n{_tail(log)}")
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                log = self._host_dir(next(iter(pending))) / "console.log"
                raise LabError(
                    f"lab host(s) {names} did not answer on SSH within {BOOT_TIMEOUT_S:.0f} s; "
                    f"console:\n{_tail(log)}"
                )
            if pending:
                time.sleep(0.05)

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
                self._destroy(host)
            remaining = [h for h in self.hosts() if h.running]
            self._update_etc_hosts(remaining, add=[], drop=[h.name for h in targets])
            if not self.hosts():
                self.teardown_network()
            return [h.name for h in targets]

    def _destroy(self, host: Host) -> None:
        """Stop one host cleanly if it can, forcibly if not; remove only what it owned."""
        if _pid_alive(host.pid, "systemd-nspawn"):
            os.kill(host.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _pid_alive(host.pid, "systemd-nspawn") and time.monotonic() < deadline:
                time.sleep(0.05)
        for cg in self._cgroups(host.name):
            _kill_cgroup(cg)
        hdir = self._host_dir(host.name)
        root = hdir / "root"
        if os.path.ismount(root):
            _run(["umount", str(root)], check=False)
        if os.path.ismount(root):  # still busy: detach now, the kernel frees it when idle
            _run(["umount", "-l", str(root)], check=False)
        _run(["ip", "netns", "del", self._netns(host.name)], check=False)
        _run(["ip", "link", "del", f"vh-{host.name}"], check=False)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / host.name, ignore_errors=True)
        if not os.path.ismount(root):
            shutil.rmtree(hdir, ignore_errors=True)

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


def _kill_cgroup(cg: Path) -> None:
    """Kill everything left in a host's cgroup, then remove its directories bottom-up."""
    if not cg.is_dir():
        return
    kill = cg / "cgroup.kill"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = _cgroup_pids(cg)
        if not pids:
            break
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for dirpath, _dirs, _files in sorted(os.walk(cg), key=lambda t: -t[0].count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)


def _cgroup_pids(cg: Path) -> list[int]:
    pids: list[int] = []
    for procs in cg.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _port_open(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ssh_banner(address: str, port: int, timeout: float) -> bool:
    """True once sshd answers with its banner (a listening socket alone is not enough)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout * 3)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False
