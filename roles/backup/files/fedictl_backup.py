#!/usr/bin/python3
"""fedictl-backup: restic backups of the fedictl apps on this host, their restore and their proof.

Installed by fedictl's backup role as /usr/local/sbin/fedictl-backup and run by
fedictl-backup.service (nightly timer), fedictl-backup@APP.service (`fedictl backup run --app`),
fedictl-backup-check.service (weekly `restic check`) and by playbooks/restore.yml.

What it backs up, per app (each kind is its own restic snapshot, tagged app:APP, kind:KIND and
run:RUN so the three snapshots of one run can be found together):
  db      the app's PostgreSQL database, for the databases this host serves (config "databases"):
          `pg_dump -Fc` by the server's own major version, inside an exported REPEATABLE READ
          snapshot whose row count and checksum per table (and sequence values) go into a
          manifest next to the dump; the dump is read back with `pg_restore --list` before it is
          sent. Uncompressed (-Z0) so that restic's chunking deduplicates unchanged tables.
  files   the paths the app role declared in /etc/fedictl/backup.d/APP.json, without its
          cache_paths unless include_caches; plus a manifest (sha256, size, mode per file).
  config  the declared config_files and the declaration itself; plus a manifest.

Exit status: 0 when everything asked for succeeded, 1 on any failure (earlier snapshots are never
touched by a failed run: retention runs only after a fully successful app), 2 for bad usage,
3 when a restore refuses to overwrite existing data. Status: /var/lib/fedictl/backup/status.json
and a Prometheus textfile. Secrets (the restic password, S3 keys) are read from files restic is
pointed at and are never printed.

Only the Python standard library is needed, plus python3-psycopg2 on database hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import gzip
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = Path(os.environ.get("FEDICTL_BACKUP_CONFIG", "/etc/fedictl/backup/config.json"))
PROGRAM = Path(__file__).resolve()
KINDS = ("db", "files", "config")
APP_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RESTIC_NO_REPOSITORY = 10
RESTIC_WRONG_PASSWORD = 12
RESTIC_PARTIAL = 3
ERR_NO_REPOSITORY = (
    "no restic repository at the configured location: deploy the backup role, which initialises it"
)
ERR_KEY_MISMATCH = (
    "the repository exists but the restic password does not open it: "
    "vault_restic_password differs from the one the repository was created with"
)
EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 1, 2, 3
PG_SOCKET = "/var/run/postgresql"
PG_BIN = "/usr/lib/postgresql/{major}/bin/{tool}"
CHUNK = 1 << 20
# Session settings under which a row's text form is the same on every server of a major version.
STABLE_TEXT = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)


class BackupError(Exception):
    """A failure worth one line in the status file and the journal."""

    exit_code = EXIT_FAILED


class Refused(BackupError):
    """A restore that would overwrite existing data without --force."""

    exit_code = EXIT_REFUSED


# --------------------------------------------------------------------------------------------
# Time, files


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_id(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


def parse_time(text: str) -> dt.datetime:
    """restic's RFC 3339 times (nanoseconds, Z or an offset) as aware datetimes."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if m.group(2) == "Z" else m.group(2)
    return dt.datetime.fromisoformat(m.group(1) + zone).astimezone(dt.UTC)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def tail(text: str, lines: int = 3) -> str:
    """The last meaningful lines of a tool's stderr, as one line."""
    kept = [
        line.strip().removeprefix("Fatal: ")
        for line in text.splitlines()
        if line.strip() and not line.startswith(("[", "Is there a repository"))
    ]
    return " | ".join(kept[-lines:]) or "no error message"


def log(message: str) -> None:
    """One line to stderr (the journal) in one write, so that concurrent kinds never mix lines."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Configuration and declarations


@dataclass
class Database:
    app: str
    name: str
    owner: str


@dataclass
class Config:
    host: str
    env_file: Path = Path("/etc/fedictl/backup/restic.env")
    restic_options: list[str] = field(default_factory=list)
    state_dir: Path = Path("/var/lib/fedictl/backup")
    cache_dir: Path = Path("/var/cache/fedictl-backup")
    declarations_dir: Path = Path("/etc/fedictl/backup.d")
    prom_file: Path = Path("/var/lib/prometheus/node-exporter/fedictl_backup.prom")
    retention: dict[str, int] = field(default_factory=dict)
    keep_within: str = ""
    include_caches: bool = False
    databases: list[Database] = field(default_factory=list)
    check_read_data_subset: str = ""
    retry_lock: str = "30m"

    @property
    def status_file(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def manifest_dir(self) -> Path:
        return self.state_dir / "manifests"

    @property
    def pg_dir(self) -> Path:
        """Where dumps are written and read back: root:postgres 0750, one 0700 dir per job."""
        return self.state_dir / "pg"

    @property
    def hash_cache_dir(self) -> Path:
        return self.state_dir / "hashes"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        paths = ("env_file", "state_dir", "cache_dir", "declarations_dir", "prom_file")
        kwargs: dict[str, Any] = {k: Path(v) if k in paths else v for k, v in data.items()}
        kwargs["databases"] = [Database(**d) for d in data.get("databases", [])]
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise BackupError(f"{CONFIG_FILE}: unknown settings {sorted(unknown)}")
        for db in kwargs["databases"]:
            if not (APP_RE.match(db.app) and IDENT_RE.match(db.name) and IDENT_RE.match(db.owner)):
                raise BackupError(f"{CONFIG_FILE}: bad database entry {db}")
        return cls(**kwargs)


def load_config(path: Path = CONFIG_FILE) -> Config:
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise BackupError(f"{path} is missing: deploy the backup role first") from exc
    except (ValueError, TypeError) as exc:
        raise BackupError(f"{path} is not valid: {exc}") from exc


@dataclass
class Declaration:
    """What an app role declared in /etc/fedictl/backup.d/APP.json."""

    app: str
    source: Path
    database: dict[str, str] | None = None
    paths: list[str] = field(default_factory=list)
    cache_paths: list[str] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    owner: str = "root"
    units: list[str] = field(default_factory=list)
    health_urls: list[str] = field(default_factory=list)


def parse_declaration(data: Any, source: Path) -> Declaration:
    """Check one declaration; raise BackupError naming the file and the field."""

    def bad(what: str) -> BackupError:
        return BackupError(f"{source}: {what}")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    known = set(Declaration.__dataclass_fields__) - {"source"}
    if unknown := set(data) - known:
        raise bad(f"unknown keys {sorted(unknown)}")
    app = data.get("app")
    if not (isinstance(app, str) and APP_RE.match(app)):
        raise bad("app must be a lower-case name")
    if source.suffix == ".json" and source.stem != app:
        raise bad(f"declares app {app!r}; the file must be named {app}.json")
    lists: dict[str, list[str]] = {}
    for key in ("paths", "cache_paths", "config_files", "units", "health_urls"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise bad(f"{key} must be a list of strings")
        lists[key] = value
    for key in ("paths", "cache_paths", "config_files"):
        for p in lists[key]:
            if not p.startswith("/") or "/../" in f"{p}/" or p.rstrip("/") == "":
                raise bad(f"{key}: {p!r} is not an absolute path below /")
    for cache in lists["cache_paths"]:
        if not any(_is_within(cache, p) for p in lists["paths"]):
            raise bad(f"cache_paths: {cache} is not inside any of paths")
    database = data.get("database")
    if database is not None and not (
        isinstance(database, dict)
        and IDENT_RE.match(str(database.get("name", "")))
        and IDENT_RE.match(str(database.get("user", "")))
    ):
        raise bad("database must be {name, user} with PostgreSQL identifiers")
    owner = data.get("owner", "root")
    if not (isinstance(owner, str) and re.match(r"^[a-z_][a-z0-9_-]*$", owner)):
        raise bad("owner must be a user name")
    return Declaration(
        app=app,
        source=source,
        database=database,
        owner=owner,
        paths=[p.rstrip("/") for p in lists["paths"]],
        cache_paths=[p.rstrip("/") for p in lists["cache_paths"]],
        config_files=lists["config_files"],
        units=lists["units"],
        health_urls=lists["health_urls"],
    )


def load_declarations(directory: Path) -> dict[str, Declaration]:
    found: dict[str, Declaration] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise BackupError(f"{path}: invalid JSON ({exc})") from exc
        decl = parse_declaration(data, path)
        found[decl.app] = decl
    return found


def _is_within(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


# --------------------------------------------------------------------------------------------
# restic


# What restic.env may set (the role's template restic.env.j2): anything else in it, such as a line
# that a newline in a setting would have added (LD_PRELOAD=...), is refused.
ENV_KEYS = frozenset(
    {
        "RESTIC_REPOSITORY",
        "RESTIC_PASSWORD_FILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
)


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    if not path.exists():
        return env
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or key not in ENV_KEYS or key in env:
            raise BackupError(
                f"{path}:{number}: {key if sep else 'a line'} is not one setting restic's "
                f"environment may hold once ({', '.join(sorted(ENV_KEYS))}): deploy the backup "
                "role again"
            )
        env[key] = value
    return env


class Restic:
    """restic with the repository, password file and options of this host."""

    def __init__(self, cfg: Config, binary: str = "restic") -> None:
        self.cfg = cfg
        self.argv = [binary, *cfg.restic_options]
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "RESTIC_CACHE_DIR": str(cfg.cache_dir),
            "RESTIC_PROGRESS_FPS": "0.016",
        }
        if tmp := os.environ.get("TMPDIR"):
            self.env["TMPDIR"] = tmp
        self._diagnosis: str | None = None
        self._diagnosis_lock = threading.Lock()
        self.env.update(read_env_file(cfg.env_file))
        if "RESTIC_REPOSITORY" not in self.env:
            raise BackupError(f"{cfg.env_file} sets no RESTIC_REPOSITORY: deploy the backup role")

    def run(
        self, *args: str, stdout: Any = subprocess.PIPE, lock: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv, *args]
        if lock:
            argv[len(self.argv) + 1 : len(self.argv) + 1] = ["--retry-lock", self.cfg.retry_lock]
        return subprocess.run(
            argv,
            env=self.env,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def must(self, *args: str, what: str, lock: bool = True) -> str:
        proc = self.run(*args, lock=lock)
        if proc.returncode != 0:
            raise BackupError(f"{what} failed (restic exit {proc.returncode}): {tail(proc.stderr)}")
        return proc.stdout

    def repository_state(self) -> str:
        """'ok', 'missing', or raise BackupError saying why the repository cannot be opened."""
        proc = self.run("cat", "config", lock=False)
        if proc.returncode == 0:
            return "ok"
        if proc.returncode == RESTIC_NO_REPOSITORY:
            return "missing"
        if proc.returncode == RESTIC_WRONG_PASSWORD:
            raise BackupError(ERR_KEY_MISMATCH)
        raise BackupError(
            f"repository unreachable (restic exit {proc.returncode}): {tail(proc.stderr)}"
        )

    def why_failed(self) -> str | None:
        """After a failed call: why the repository cannot be opened, or None when it can.

        Nightly runs do not open the repository before their snapshots (each restic call costs
        a key derivation and a session); restic's own exit codes say "no repository" (10) and
        "wrong password" (12). Any other failure is told apart here, only then: one `restic cat
        config` per run, shared by the kinds that fail together (an unreachable server).
        """
        with self._diagnosis_lock:
            if self._diagnosis is None:
                try:
                    state = self.repository_state()
                    self._diagnosis = ERR_NO_REPOSITORY if state == "missing" else ""
                except BackupError as exc:
                    self._diagnosis = str(exc)
            return self._diagnosis or None

    def backup(
        self, paths: list[str], tags: list[str], excludes: Iterable[str] = ()
    ) -> dict[str, Any]:
        # --no-scan: restic's scanner walks the tree a second time only to estimate the progress
        # bar's total, which nobody sees here (restic >= 0.17; Debian 13 has 0.18).
        args = ["backup", "--json", "--no-scan", "--host", self.cfg.host, "--tag", ",".join(tags)]
        for ex in excludes:
            args += ["--exclude", ex]
        proc = self.run(*args, "--", *paths)
        summary = {}
        errors = []
        for line in proc.stdout.splitlines():
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if msg.get("message_type") == "summary":
                    summary = msg
                elif msg.get("message_type") == "error":
                    errors.append(
                        f"{msg.get('item', '')}: {msg.get('error', {}).get('message', msg)}"
                    )
        if proc.returncode == RESTIC_PARTIAL:
            raise BackupError(
                "restic could not read some files, the snapshot is incomplete: "
                + "; ".join(errors[:3])
            )
        if proc.returncode == RESTIC_NO_REPOSITORY:
            raise BackupError(ERR_NO_REPOSITORY)
        if proc.returncode == RESTIC_WRONG_PASSWORD:
            raise BackupError(ERR_KEY_MISMATCH)
        if proc.returncode != 0 or not summary.get("snapshot_id"):
            if reason := self.why_failed():
                raise BackupError(reason)
            detail = "; ".join(errors[:3]) or tail(proc.stderr)
            raise BackupError(f"restic backup failed (exit {proc.returncode}): {detail}")
        return summary

    def snapshots(self, *filters: str) -> list[dict[str, Any]]:
        out = self.must("snapshots", "--json", *filters, what="listing the snapshots", lock=False)
        data = json.loads(out or "[]")
        return data if isinstance(data, list) else []

    def dump(self, snapshot: str, path: str, dest: Path | None = None) -> bytes:
        """A file of a snapshot, into ``dest`` (returns b"") or as bytes."""
        if dest is not None:
            with open(dest, "wb") as f:
                proc = subprocess.run(
                    [*self.argv, "dump", snapshot, path],
                    env=self.env,
                    stdout=f,
                    stderr=subprocess.PIPE,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            if proc.returncode != 0:
                raise BackupError(f"restic dump {path} failed: {tail(proc.stderr.decode())}")
            return b""
        proc_b = subprocess.run(
            [*self.argv, "dump", snapshot, path],
            env=self.env,
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc_b.returncode != 0:
            raise BackupError(f"restic dump {path} failed: {tail(proc_b.stderr.decode())}")
        return proc_b.stdout


def snapshot_info(snap: dict[str, Any]) -> dict[str, Any]:
    """One restic snapshot as fedictl shows it."""
    tags = snap.get("tags") or []
    tag = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in tags if ":" in t}
    summary = snap.get("summary") or {}
    return {
        "id": snap.get("id", ""),
        "short_id": snap.get("short_id", snap.get("id", "")[:8]),
        "time": iso(parse_time(snap["time"])) if snap.get("time") else None,
        "host": snap.get("hostname", ""),
        "app": tag.get("app"),
        "kind": tag.get("kind"),
        "run": tag.get("run"),
        "paths": snap.get("paths", []),
        "size": summary.get("total_bytes_processed"),
        "files": summary.get("total_files_processed"),
        "added": summary.get("data_added"),
    }


def forget_args(cfg: Config, apps: list[str]) -> list[str]:
    """One `restic forget` for these apps' snapshots from this host, with the retention counts.

    Grouped by host and paths (restic's default): each app's db, files and config snapshots have
    their own paths (the dump directory, the declared paths plus the kind's manifest), so each
    (host, app, kind) is its own group and keeps its own daily/weekly/monthly snapshots.
    """
    keep = []
    for period in ("daily", "weekly", "monthly"):
        count = int(cfg.retention.get(period, 0))
        if count > 0:
            keep += [f"--keep-{period}", str(count)]
    if not keep:
        raise BackupError("retention keeps nothing: set at least one of daily, weekly, monthly")
    if cfg.keep_within:
        keep += ["--keep-within", cfg.keep_within]
    tags = [arg for app in apps for arg in ("--tag", f"app:{app}")]
    return ["forget", "--json", "--host", cfg.host, *tags, "--group-by", "host,paths", *keep]


def count_forgotten(forget_json: str) -> int:
    """How many snapshots a `restic forget --json` removed."""
    try:
        groups = json.loads(forget_json or "[]")
    except ValueError:
        return 0
    return sum(len(g.get("remove") or []) for g in groups if isinstance(g, dict))


# --------------------------------------------------------------------------------------------
# File manifests (sha256 per file; a cache keyed by stat data keeps unchanged files unread)


def walk_files(
    roots: Iterable[str], excludes: Iterable[str]
) -> Iterator[tuple[str, os.stat_result]]:
    """(path, lstat) of every regular file and symlink under roots, outside excludes."""
    excludes = [e.rstrip("/") for e in excludes]
    for root in roots:
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode):
            yield root, st
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in excludes)
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if path in excludes:
                    continue
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    yield path, st
            for name in dirnames:  # symlinks to directories are listed as dirnames
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    yield path, st


def build_manifest(
    roots: list[str], excludes: list[str], cache: dict[str, list[Any]]
) -> tuple[dict[str, Any], dict[str, list[Any]], int]:
    """The manifest of roots, the new hash cache, and how many files had to be read."""
    entries: dict[str, dict[str, Any]] = {}
    new_cache: dict[str, list[Any]] = {}
    hashed = 0
    present = [r for r in roots if os.path.lexists(r)]
    for path, st in walk_files(present, excludes):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entries[path] = {"type": "symlink", "target": os.readlink(path)}
            continue
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        cached = cache.get(path)
        if cached is not None and cached[:4] == key:
            digest = cached[4]
        else:
            digest = sha256_file(path)
            hashed += 1
        new_cache[path] = [*key, digest]
        entries[path] = {
            "type": "file",
            "size": st.st_size,
            "mode": f"{mode:04o}",
            "sha256": digest,
        }
    manifest = {
        "version": 1,
        "roots": present,
        "missing_roots": sorted(set(roots) - set(present)),
        "excludes": excludes,
        "entries": entries,
    }
    return manifest, new_cache, hashed


def verify_manifest(manifest: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Compare restored files (under prefix) with a manifest: content, size, mode, link targets."""
    mismatches: list[dict[str, str]] = []
    checked = 0
    for path, entry in sorted(manifest.get("entries", {}).items()):
        real = prefix + path
        checked += 1
        if not os.path.lexists(real):
            mismatches.append({"path": path, "problem": "missing"})
            continue
        st = os.lstat(real)
        if entry["type"] == "symlink":
            if not stat.S_ISLNK(st.st_mode) or os.readlink(real) != entry["target"]:
                mismatches.append({"path": path, "problem": "symlink target differs"})
            continue
        if not stat.S_ISREG(st.st_mode):
            mismatches.append({"path": path, "problem": "not a regular file"})
        elif st.st_size != entry["size"] or sha256_file(real) != entry["sha256"]:
            mismatches.append({"path": path, "problem": "content differs"})
        elif f"{stat.S_IMODE(st.st_mode):04o}" != entry["mode"]:
            mismatches.append(
                {
                    "path": path,
                    "problem": f"mode {stat.S_IMODE(st.st_mode):04o}, expected {entry['mode']}",
                }
            )
    return {
        "checked": checked,
        "ok": not mismatches,
        "mismatches": mismatches[:50],
        "mismatch_count": len(mismatches),
    }


def dump_json_gz(data: Any) -> bytes:
    """Deterministic bytes (no timestamp in the gzip header), so an unchanged manifest dedups."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(raw, compresslevel=6, mtime=0)


# --------------------------------------------------------------------------------------------
# Database (the _db-* subcommands run as postgres; the others call them)


# How a table's checksum is computed; the manifest records it ("checksum_method") and a restore or
# a verify computes the same. Both are order-independent: two sums over every row's text form.
#   hash64  sums of PostgreSQL's 64-bit hashtextextended(row, 0) and (row, 1). The default: it
#           costs about what turning the rows into text costs (1.5 s for 800,000 rows here),
#           where md5() pays a hash context per row (2.8 s). Hash values are those of the
#           server's byte order: a restore onto a big-endian server would report a mismatch.
#   md5     sums of two 60-bit slices of md5(row); manifests without "checksum_method".
CHECKSUM_METHOD = "hash64"
CHECKSUM_SQL = {
    "hash64": (
        "SELECT count(*),"
        " coalesce(sum(hashtextextended(r, 0)), 0)::text,"
        " coalesce(sum(hashtextextended(r, 1)), 0)::text"
        " FROM (SELECT t::text AS r FROM ONLY {} AS t OFFSET 0) AS s"
    ),
    "md5": (
        "SELECT count(*),"
        " coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0)::text,"
        " coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0)::text"
        " FROM (SELECT md5(t::text) AS h FROM ONLY {} AS t) AS s"
    ),
}


def checksum_method(manifest: dict[str, Any]) -> str:
    """The checksum method a database manifest was made with (md5 before it was recorded)."""
    method = str(manifest.get("checksum_method", "md5"))
    if method not in CHECKSUM_SQL:
        raise BackupError(
            f"the manifest's checksums are of an unknown kind ({method!r}): "
            "install the fedictl-backup that made them"
        )
    return method


def table_checksum_query(sql: Any, schema: str, table: str, method: str) -> Any:
    """Row count and an order-independent checksum of one table (see CHECKSUM_SQL)."""
    return sql.SQL(CHECKSUM_SQL[method]).format(sql.Identifier(schema, table))


USER_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = ANY(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def db_manifest(cur: Any, method: str = CHECKSUM_METHOD) -> dict[str, Any]:
    """Row counts and checksums per table, and sequence values, of the current transaction."""
    from psycopg2 import sql

    for statement in STABLE_TEXT:
        cur.execute(statement)
    cur.execute(USER_RELATIONS, (["r"],))
    tables: dict[str, dict[str, Any]] = {}
    for schema, table, _ in cur.fetchall():
        cur.execute(table_checksum_query(sql, schema, table, method))
        rows, a, b = cur.fetchone()
        tables[f"{schema}.{table}"] = {"rows": int(rows), "checksum": f"{int(a):x}.{int(b):x}"}
    cur.execute(USER_RELATIONS, (["S"],))
    sequences: dict[str, dict[str, Any]] = {}
    for schema, seq, _ in cur.fetchall():
        cur.execute(
            sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, seq))
        )
        last, called = cur.fetchone()
        sequences[f"{schema}.{seq}"] = {"last_value": int(last), "is_called": bool(called)}
    return {"tables": tables, "sequences": sequences}


def compare_db(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """Per table: expected vs restored rows and checksum; sequences; verdict."""
    rows = []
    for name in sorted(set(expected.get("tables", {})) | set(actual.get("tables", {}))):
        e = expected.get("tables", {}).get(name)
        a = actual.get("tables", {}).get(name)
        rows.append(
            {
                "table": name,
                "expected_rows": e["rows"] if e else None,
                "rows": a["rows"] if a else None,
                "expected_checksum": e["checksum"] if e else None,
                "checksum": a["checksum"] if a else None,
                "ok": e is not None and a is not None and e == a,
            }
        )
    seq_bad = sorted(
        name
        for name in set(expected.get("sequences", {})) | set(actual.get("sequences", {}))
        if expected.get("sequences", {}).get(name) != actual.get("sequences", {}).get(name)
    )
    return {
        "tables": rows,
        "sequences_checked": len(expected.get("sequences", {})),
        "sequences_differing": seq_bad,
        "ok": all(r["ok"] for r in rows) and not seq_bad,
    }


def _pg_connect(dbname: str) -> Any:
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - the role installs it on database hosts
        raise BackupError(
            "python3-psycopg2 is missing: deploy the backup role on this host"
        ) from exc
    try:
        return psycopg2.connect(dbname=dbname, host=PG_SOCKET)
    except psycopg2.Error as exc:
        raise BackupError(f"cannot connect to database {dbname}: {str(exc).strip()}") from exc


def _pg_tool(major: int, tool: str) -> str:
    path = PG_BIN.format(major=major, tool=tool)
    if not os.access(path, os.X_OK):
        raise BackupError(
            f"{path} is missing: the server runs PostgreSQL {major}; "
            f"install postgresql-client-{major}"
        )
    return path


def cmd_db_dump(args: argparse.Namespace) -> int:
    """As postgres: dump one database inside an exported snapshot, with its manifest."""
    out = Path(args.out)
    conn = _pg_connect(args.database)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    cur = conn.cursor()
    cur.execute(
        "SELECT pg_export_snapshot(), current_setting('server_version_num')::int,"
        " current_setting('server_version'), pg_encoding_to_char(d.encoding), d.datcollate,"
        " d.datctype, d.datlocprovider::text, pg_get_userbyid(d.datdba)"
        " FROM pg_database d WHERE d.datname = current_database()"
    )
    snapshot, version_num, version, encoding, collate, ctype, provider, owner = cur.fetchone()
    major = version_num // 10000
    dump = out / "database.dump"
    # pg_dump and the checksums read the same exported snapshot, side by side (two server backends).
    t0 = time.monotonic()
    with open(out / "pg_dump.err", "w+") as errors:
        pg_dump = subprocess.Popen(
            [_pg_tool(major, "pg_dump"), "--format=custom", "--compress=0",
             f"--snapshot={snapshot}", "--file", str(dump), "--dbname", args.database,
             "--host", PG_SOCKET],
            stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        try:
            tables = db_manifest(cur)
            checksums_done = time.monotonic()
        finally:
            code = pg_dump.wait()
        errors.seek(0)
        if code != 0:
            raise BackupError(f"pg_dump of {args.database} failed: {tail(errors.read())}")
    (out / "pg_dump.err").unlink()
    manifest = {
        "version": 1,
        "database": args.database,
        "owner": owner,
        "encoding": encoding,
        "collate": collate,
        "ctype": ctype,
        "locale_provider": provider,
        "server_version": version,
        "server_major": major,
        "checksum_method": CHECKSUM_METHOD,
        **tables,
    }
    conn.rollback()
    conn.close()
    log(
        f"dumped {dump.stat().st_size} bytes and checksummed {len(tables['tables'])} tables "
        f"in {time.monotonic() - t0:.1f} s (checksums {checksums_done - t0:.1f} s)"
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


def restore_list(pg_restore: str, dump: Path) -> list[str]:
    proc = subprocess.run(
        [pg_restore, "--list", str(dump)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BackupError(f"pg_restore --list cannot read {dump}: {tail(proc.stderr)}")
    return proc.stdout.splitlines()


def filter_restore_list(lines: list[str]) -> tuple[list[str], list[str]]:
    """The TOC without extension comments (only an extension's owner may set them), and the
    extensions the dump creates (made first, by postgres, so untrusted ones work too)."""
    kept, extensions = [], []
    for line in lines:
        if re.search(r"\bCOMMENT - EXTENSION\b", line):
            kept.append(";" + line)
            continue
        if m := re.match(r"^\d+; \d+ \d+ EXTENSION - (\S+)", line):
            extensions.append(m.group(1))
        kept.append(line)
    return kept, extensions


def database_objects(cur: Any, database: str) -> list[tuple[str, str, str]] | None:
    """The user tables, views and sequences of a database; None when it does not exist."""
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
    if cur.fetchone() is None:
        return None
    conn = _pg_connect(database)
    c2 = conn.cursor()
    c2.execute(USER_RELATIONS, (["r", "p", "v", "m", "S", "f"],))
    objects: list[tuple[str, str, str]] = c2.fetchall()
    conn.close()
    return objects


def refuse_non_empty(database: str, objects: list[tuple[str, str, str]]) -> Refused:
    names = ", ".join(f"{s}.{n}" for s, n, _ in objects[:5])
    return Refused(
        f"database {database} is not empty ({len(objects)} tables, views or sequences: "
        f"{names}{', ...' if len(objects) > 5 else ''}); restore writes only into a fresh "
        "database. Pass --force to drop it and restore the backup in its place."
    )


def cmd_db_check(args: argparse.Namespace) -> int:
    """As postgres: would a restore into this database be refused? Changes nothing."""
    admin = _pg_connect("postgres")
    objects = database_objects(admin.cursor(), args.database)
    admin.close()
    if objects and not args.force:
        raise refuse_non_empty(args.database, objects)
    state = "absent" if objects is None else ("replaced" if objects else "empty")
    print(json.dumps({"database": args.database, "state": state}))
    return 0


def cmd_db_restore(args: argparse.Namespace) -> int:
    """As postgres: restore a dump into a fresh database and compare it with its manifest."""
    from psycopg2 import sql

    manifest = json.loads(Path(args.manifest).read_text())
    method = checksum_method(manifest)
    dump = Path(args.dump)
    admin = _pg_connect("postgres")
    admin.autocommit = True
    cur = admin.cursor()
    cur.execute("SELECT current_setting('server_version_num')::int / 10000")
    major = cur.fetchone()[0]
    if major < int(manifest.get("server_major", major)):
        raise BackupError(
            f"the dump comes from PostgreSQL {manifest['server_major']}; this server runs {major}: "
            "restore onto the same or a newer major version"
        )
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (args.owner,))
    if cur.fetchone() is None:
        raise BackupError(f"role {args.owner} does not exist: create the database owner first")
    objects = database_objects(cur, args.database)
    exists = objects is not None
    if objects and not args.force:
        raise refuse_non_empty(args.database, objects)
    if objects:
        log(f"--force: dropping database {args.database} ({len(objects)} objects)")
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(args.database)))
        exists = False
    if not exists:
        create = sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {}").format(
            sql.Identifier(args.database),
            sql.Identifier(args.owner),
            sql.Literal(manifest.get("encoding", "UTF8")),
        )
        if manifest.get("locale_provider", "c") == "c":
            create += sql.SQL(" LOCALE_PROVIDER libc LC_COLLATE {} LC_CTYPE {}").format(
                sql.Literal(manifest.get("collate", "C.UTF-8")),
                sql.Literal(manifest.get("ctype", "C.UTF-8")),
            )
        cur.execute(create)
    admin.close()
    pg_restore = _pg_tool(major, "pg_restore")
    kept, extensions = filter_restore_list(restore_list(pg_restore, dump))
    conn = _pg_connect(args.database)
    conn.autocommit = True
    c3 = conn.cursor()
    for ext in extensions:
        c3.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
    conn.close()
    list_file = dump.with_suffix(".list")
    list_file.write_text("\n".join(kept) + "\n")
    proc = subprocess.run(
        [
            pg_restore,
            "--dbname",
            args.database,
            "--host",
            PG_SOCKET,
            "--no-owner",
            f"--role={args.owner}",
            "--exit-on-error",
            "--single-transaction",
            f"--use-list={list_file}",
            str(dump),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BackupError(
            f"pg_restore into {args.database} failed (nothing was kept): {tail(proc.stderr)}"
        )
    conn = _pg_connect(args.database)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    actual = db_manifest(conn.cursor(), method)
    conn.rollback()
    conn.close()
    result = compare_db(manifest, actual)
    result.update(database=args.database, owner=args.owner, server_major=major)
    print(json.dumps(result))
    return 0


def as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this program's _db-* subcommand as the postgres user (peer authentication)."""
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise BackupError(
            "there is no postgres user: PostgreSQL is not installed on this host"
        ) from exc
    env = {"PATH": "/usr/bin:/bin", "HOME": pg.pw_dir, "LANG": "C.UTF-8", "PGHOST": PG_SOCKET}
    return subprocess.run(
        [sys.executable, str(PROGRAM), *args],
        user=pg.pw_uid,
        group=pg.pw_gid,
        extra_groups=[],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )


def _error_line(stderr: str) -> str:
    for line in reversed(stderr.splitlines()):
        if line.startswith("fedictl-backup: error: "):
            return line.removeprefix("fedictl-backup: error: ")
    return tail(stderr)


def _postgres_dir(path: Path) -> None:
    """An empty directory only postgres (and root) may use, in a parent postgres may traverse."""
    pg = pwd.getpwnam("postgres")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chown(path.parent, 0, pg.pw_gid)
    os.chmod(path.parent, 0o750)  # noqa: S103 - group postgres only, to traverse
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.chown(path, pg.pw_uid, pg.pw_gid)


# --------------------------------------------------------------------------------------------
# Backup


@dataclass
class KindResult:
    snapshot: str | None = None
    bytes_added: int = 0
    error: str | None = None
    seconds: float = 0.0
    size: int = 0  # bytes the snapshot holds (restic's total_bytes_processed)


class Backup:
    def __init__(self, cfg: Config, restic: Restic, now: dt.datetime) -> None:
        self.cfg, self.restic, self.now = cfg, restic, now
        self.run = run_id(now)

    def tags(self, app: str, kind: str) -> list[str]:
        return [f"app:{app}", f"kind:{kind}", f"run:{self.run}"]

    def db(self, db: Database) -> dict[str, Any]:
        work = self.cfg.pg_dir / f"dump-{db.app}"
        _postgres_dir(work)
        try:
            t0 = time.monotonic()
            proc = as_postgres("_db-dump", "--database", db.name, "--out", str(work))
            if proc.returncode != 0:
                raise BackupError(_error_line(proc.stderr))
            log(f"{db.app} db: {proc.stderr.strip()}, {time.monotonic() - t0:.1f} s in all")
            manifest = json.loads((work / "manifest.json").read_text())
            dump = work / "database.dump"
            toc = restore_list(_pg_tool(manifest["server_major"], "pg_restore"), dump)
            entries = [line for line in toc if line and not line.startswith(";")]
            if not entries:
                raise BackupError(f"the dump of {db.name} lists nothing to restore")
            manifest.update(
                app=db.app,
                host=self.cfg.host,
                run=self.run,
                toc_entries=len(entries),
                dump_bytes=dump.stat().st_size,
                created=iso(self.now),
            )
            (work / "manifest.json").write_text(
                json.dumps(manifest, indent=1, sort_keys=True) + "\n"
            )
            return self.restic.backup([str(work)], self.tags(db.app, "db"))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def tree(self, decl: Declaration, kind: str) -> dict[str, Any]:
        if kind == "files":
            roots = decl.paths
            excludes = [] if self.cfg.include_caches else decl.cache_paths
        else:
            roots = [*decl.config_files, str(decl.source)]
            excludes = []
        cache_file = self.cfg.hash_cache_dir / f"{decl.app}-{kind}.json"
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        manifest, new_cache, hashed = build_manifest(roots, excludes, cache)
        if kind == "config" and manifest["missing_roots"]:
            raise BackupError(f"config files missing: {', '.join(manifest['missing_roots'])}")
        for missing in manifest["missing_roots"]:
            log(f"{decl.app} {kind}: {missing} does not exist yet; nothing to back up there")
        manifest.update(
            app=decl.app,
            kind=kind,
            host=self.cfg.host,
            run=self.run,
            owner=decl.owner,
            created=iso(self.now),
            declaration=str(decl.source),
        )
        log(f"{decl.app} {kind}: {len(manifest['entries'])} files, {hashed} read for checksums")
        manifest_file = self.cfg.manifest_dir / decl.app / f"{kind}.json.gz"
        write_atomic(manifest_file, dump_json_gz(manifest), 0o600)
        summary = self.restic.backup(
            [*manifest["roots"], str(manifest_file)], self.tags(decl.app, kind), excludes
        )
        write_atomic(cache_file, json.dumps(new_cache).encode(), 0o600)
        return summary


def plan_apps(cfg: Config, decls: dict[str, Declaration], only: list[str]) -> dict[str, list[str]]:
    """app -> the kinds this host backs up for it."""
    apps: dict[str, list[str]] = {}
    for db in cfg.databases:
        apps.setdefault(db.app, []).append("db")
    for app, decl in decls.items():
        kinds = apps.setdefault(app, [])
        if decl.paths:
            kinds.append("files")
        kinds.append("config")
    if only:
        return {a: k for a, k in apps.items() if a in only}
    return apps


def load_status(path: Path, host: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("apps"), dict):
            data["host"] = host
            return data
    except (OSError, ValueError):
        pass
    return {"host": host, "updated": None, "apps": {}}


def update_app_status(
    status: dict[str, Any],
    app: str,
    started: dt.datetime,
    finished: dt.datetime,
    results: dict[str, KindResult],
    run: str,
) -> None:
    entry = status["apps"].setdefault(app, {"last_success": None, "snapshots": {}})
    errors = [f"{kind}: {r.error}" for kind, r in results.items() if r.error]
    entry["last_attempt"] = iso(started)
    entry["last_run"] = run
    entry["last_error"] = "; ".join(errors) if errors else None
    entry["duration_seconds"] = round((finished - started).total_seconds(), 1)
    entry["kinds"] = sorted(results)
    entry["kind_seconds"] = {k: r.seconds for k, r in results.items()}
    attempt = {k: r.snapshot for k, r in results.items() if r.snapshot}
    entry["last_attempt_snapshots"] = attempt
    if not errors:
        entry["last_success"] = iso(finished)
        entry["snapshots"] = attempt
        entry["snapshot_bytes"] = {k: r.size for k, r in results.items()}
        entry["bytes_added"] = sum(r.bytes_added for r in results.values())
    entry.setdefault("bytes_added", 0)
    status["updated"] = iso(finished)


def prom_text(status: dict[str, Any]) -> str:
    """The status as Prometheus text exposition (node-exporter textfile collector)."""

    def ts(value: str | None) -> str:
        return str(int(parse_time(value).timestamp())) if value else "0"

    metrics = [
        (
            "fedictl_backup_last_success_timestamp_seconds",
            "End of the last successful backup of the app on this host.",
        ),
        (
            "fedictl_backup_last_attempt_timestamp_seconds",
            "Start of the last backup attempt of the app on this host.",
        ),
        (
            "fedictl_backup_last_attempt_success",
            "1 if the last backup attempt of the app succeeded, else 0.",
        ),
        ("fedictl_backup_duration_seconds", "Duration of the last backup attempt of the app."),
        (
            "fedictl_backup_bytes_added",
            "Bytes the last successful backup of the app added to the repository.",
        ),
    ]
    lines = []
    for name, help_text in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for app, e in sorted(status.get("apps", {}).items()):
            value = {
                "fedictl_backup_last_success_timestamp_seconds": ts(e.get("last_success")),
                "fedictl_backup_last_attempt_timestamp_seconds": ts(e.get("last_attempt")),
                "fedictl_backup_last_attempt_success": "0" if e.get("last_error") else "1",
                "fedictl_backup_duration_seconds": str(e.get("duration_seconds", 0)),
                "fedictl_backup_bytes_added": str(e.get("bytes_added", 0)),
            }[name]
            lines.append(f'{name}{{app="{app}"}} {value}')
    check = status.get("check")
    if check:
        lines += [
            "# HELP fedictl_backup_check_last_success_timestamp_seconds"
            " End of the last successful restic check.",
            "# TYPE fedictl_backup_check_last_success_timestamp_seconds gauge",
            f"fedictl_backup_check_last_success_timestamp_seconds {ts(check.get('last_success'))}",
            "# HELP fedictl_backup_check_last_attempt_success"
            " 1 if the last restic check passed, else 0.",
            "# TYPE fedictl_backup_check_last_attempt_success gauge",
            f"fedictl_backup_check_last_attempt_success {0 if check.get('last_error') else 1}",
        ]
    return "\n".join(lines) + "\n"


def save_status(cfg: Config, status: dict[str, Any]) -> None:
    write_atomic(
        cfg.status_file, (json.dumps(status, indent=2, sort_keys=True) + "\n").encode(), 0o644
    )
    write_atomic(cfg.prom_file, prom_text(status).encode(), 0o644)


@contextlib.contextmanager
def host_lock(cfg: Config) -> Iterator[None]:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    with open(cfg.state_dir / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config()
    with host_lock(cfg):
        return backup_run(cfg, args.app or [])


def backup_run(cfg: Config, only: list[str], restic: Restic | None = None) -> int:
    decls = load_declarations(cfg.declarations_dir)
    apps = plan_apps(cfg, decls, only)
    for app in only:
        if app not in apps:
            log(f"{app}: nothing of it is backed up on {cfg.host} (no database, no declaration)")
    status = load_status(cfg.status_file, cfg.host)
    if not apps:
        status["updated"] = iso(utcnow())
        save_status(cfg, status)
        return 0
    failed = False
    start = utcnow()
    try:
        restic = restic or Restic(cfg)
    except BackupError as exc:
        for app, kinds in apps.items():
            update_app_status(
                status,
                app,
                start,
                utcnow(),
                {k: KindResult(error=str(exc)) for k in kinds},
                run_id(start),
            )
        save_status(cfg, status)
        log(f"backup failed: {exc}")
        return EXIT_FAILED
    job = Backup(cfg, restic, start)
    forgotten = 0
    succeeded: list[str] = []
    databases = {db.app: db for db in cfg.databases}

    def one_kind(app: str, kind: str) -> KindResult:
        t0 = time.monotonic()
        try:
            summary = job.db(databases[app]) if kind == "db" else job.tree(decls[app], kind)
            result = KindResult(
                summary["snapshot_id"],
                int(summary.get("data_added", 0)),
                size=int(summary.get("total_bytes_processed", 0)),
            )
            log(
                f"{app} {kind}: snapshot {summary['snapshot_id'][:8]}, "
                f"{summary.get('data_added', 0)} bytes added, "
                f"{time.monotonic() - t0:.1f} s"
            )
        except BackupError as exc:
            result = KindResult(error=str(exc))
            log(f"{app} {kind}: FAILED: {exc}")
        except OSError as exc:
            result = KindResult(error=f"{exc.strerror}: {exc.filename}")
            log(f"{app} {kind}: FAILED: {exc}")
        except Exception as exc:
            # A bug must still reach the status file: anything unforeseen fails this kind like any
            # other error (the unit fails, status and metric say why, earlier snapshots stay),
            # with the traceback in the journal.
            result = KindResult(error=f"internal error ({type(exc).__name__}: {exc})")
            log(f"{app} {kind}: FAILED with an internal error:\n{traceback.format_exc()}")
        result.seconds = round(time.monotonic() - t0, 1)
        return result

    for app, kinds in apps.items():
        started = utcnow()
        # An app's kinds are independent snapshots (their own paths and tags) and restic's backup
        # lock is shared, so they run side by side: the database dump's minutes overlap the
        # files' scan, and each restic process's start (key derivation, session, index) overlaps
        # the others'. Apps still go one after the other.
        with ThreadPoolExecutor(max_workers=len(kinds), thread_name_prefix=app) as pool:
            futures = {kind: pool.submit(one_kind, app, kind) for kind in kinds}
        results = {kind: future.result() for kind, future in futures.items()}
        if not any(r.error for r in results.values()):
            succeeded.append(app)
        failed = failed or any(r.error for r in results.values())
        update_app_status(status, app, started, utcnow(), results, job.run)
        save_status(cfg, status)
    if succeeded:  # retention only for apps whose snapshots all succeeded
        try:
            forgotten = count_forgotten(
                restic.must(*forget_args(cfg, succeeded), what="retention (restic forget)")
            )
        except BackupError as exc:
            log(f"retention failed (the new snapshots are safe): {exc}")
            failed = True
            for app in succeeded:  # a restorable backup exists: last_success stays
                status["apps"][app]["last_error"] = f"retention: {exc}"
            save_status(cfg, status)
    if not failed and forgotten:
        log(f"retention forgot {forgotten} snapshot(s); pruning the data only they used")
        try:
            restic.must("prune", what="pruning forgotten snapshots")
        except BackupError as exc:
            log(f"prune failed (the snapshots are safe; the next run prunes again): {exc}")
            failed = True
            for entry in status["apps"].values():
                entry["last_error"] = entry.get("last_error") or f"prune: {exc}"
            save_status(cfg, status)
    if failed:
        log("backup FAILED: see the errors above and " + str(cfg.status_file))
        return EXIT_FAILED
    log(f"backup of {', '.join(apps)} done in {(utcnow() - start).total_seconds():.0f} s")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config()
    started = utcnow()
    status = load_status(cfg.status_file, cfg.host)
    check = status.setdefault("check", {"last_success": None})
    check["last_attempt"] = iso(started)
    try:
        restic = Restic(cfg)
        extra = (
            [f"--read-data-subset={cfg.check_read_data_subset}"]
            if cfg.check_read_data_subset
            else []
        )
        restic.must("check", *extra, what="restic check")
        check["last_error"] = None
        check["last_success"] = iso(utcnow())
        code = 0
    except BackupError as exc:
        check["last_error"] = str(exc)
        log(f"check FAILED: {exc}")
        code = EXIT_FAILED
    check["duration_seconds"] = round((utcnow() - started).total_seconds(), 1)
    save_status(cfg, status)
    return code


def cmd_init_repo(args: argparse.Namespace) -> int:
    restic = Restic(load_config())
    state = restic.repository_state()
    if state == "ok":
        print("exists")
        return 0
    if args.no_create:
        raise BackupError(
            "no restic repository at the configured location (this run does not create one)"
        )
    restic.must("init", what="creating the repository", lock=False)
    # Open it once, so that restic's cache for it exists before the first run's snapshots start
    # side by side (concurrent first opens of an empty cache can race; restic then goes on
    # without its cache, slower).
    restic.must("cat", "config", what="opening the new repository", lock=False)
    print("created")
    return 0


# --------------------------------------------------------------------------------------------
# Listing and choosing snapshots


def cmd_snapshots(args: argparse.Namespace) -> int:
    restic = Restic(load_config())
    filters = ["--tag", f"app:{args.app}"] if args.app else []
    snaps = [snapshot_info(s) for s in restic.snapshots(*filters)]
    snaps = [s for s in snaps if s["app"] and s["kind"]]
    print(json.dumps(sorted(snaps, key=lambda s: (s["time"] or "", s["kind"] or ""))))
    return 0


def choose_snapshots(snaps: list[dict[str, Any]], app: str, wanted: str = "") -> dict[str, Any]:
    """The snapshots to restore: for each kind, the one of the chosen run, else the nearest in time.

    ``wanted`` is a snapshot id (or its prefix) or a run id; empty means the latest run. In a split
    setup the database host and the app host run at different times, so a run may lack a kind:
    the snapshot of that kind nearest in time to the chosen run is taken.
    """
    mine = [s for s in snaps if s.get("app") == app and s.get("kind") in KINDS and s.get("time")]
    if not mine:
        raise BackupError(f"the repository holds no snapshot of {app}")
    if wanted:
        wanted = wanted.removeprefix("run:")
        hits = [s for s in mine if s["id"].startswith(wanted) or s.get("run") == wanted]
        if not hits:
            raise BackupError(
                f"no snapshot or run {wanted!r} of {app}; `fedictl backup list` shows them"
            )
        runs = {s.get("run") for s in hits}
        if len(runs) > 1:
            raise BackupError(f"{wanted!r} matches several runs of {app}: give more of the id")
        anchor = max(hits, key=lambda s: s["time"])
    else:
        anchor = max(mine, key=lambda s: s["time"])
    at = parse_time(anchor["time"])
    chosen: dict[str, Any] = {}
    for kind in KINDS:
        of_kind = [s for s in mine if s["kind"] == kind]
        same_run = [s for s in of_kind if s.get("run") == anchor.get("run")]
        pool = same_run or of_kind
        if pool:
            chosen[kind] = min(
                pool, key=lambda s: abs((parse_time(s["time"]) - at).total_seconds())
            )
    return {"app": app, "run": anchor.get("run"), "time": anchor["time"], "snapshots": chosen}


def manifest_path_in(snap: dict[str, Any], kind: str) -> str:
    for p in snap.get("paths", []):
        if p.endswith(f"/{kind}.json.gz"):
            return str(p)
    raise BackupError(f"snapshot {snap['short_id']} holds no {kind} manifest")


def cmd_restore_plan(args: argparse.Namespace) -> int:
    restic = Restic(load_config())
    snaps = [snapshot_info(s) for s in restic.snapshots("--tag", f"app:{args.app}")]
    plan = choose_snapshots(snaps, args.app, args.snapshot or "")
    decl = None
    config_snap = plan["snapshots"].get("config")
    if config_snap:
        manifest = json.loads(
            gzip.decompress(restic.dump(config_snap["id"], manifest_path_in(config_snap, "config")))
        )
        source = manifest.get("declaration")
        if source:
            decl = json.loads(restic.dump(config_snap["id"], source))
    db_manifest_data = None
    db_snap = plan["snapshots"].get("db")
    if db_snap:
        db_manifest_data = json.loads(
            restic.dump(db_snap["id"], db_snap["paths"][0] + "/manifest.json")
        )
    plan["declaration"] = decl
    plan["database"] = (
        {k: db_manifest_data.get(k) for k in ("database", "owner", "server_major", "tables")}
        if db_manifest_data
        else None
    )
    print(json.dumps(plan))
    return 0


# --------------------------------------------------------------------------------------------
# Restore


def cmd_restore_db(args: argparse.Namespace) -> int:
    if args.check:
        return restore_db_check(args)
    cfg = load_config()
    restic = Restic(cfg)
    snap = find_snapshot(restic, args.snapshot, args.app, "db")
    work = cfg.pg_dir / f"restore-{args.app}"
    _postgres_dir(work)
    pg = pwd.getpwnam("postgres")
    try:
        for name in ("database.dump", "manifest.json"):
            restic.dump(snap["id"], f"{snap['paths'][0]}/{name}", work / name)
            os.chown(work / name, pg.pw_uid, pg.pw_gid)
        argv = [
            "_db-restore",
            "--database",
            args.database,
            "--owner",
            args.owner,
            "--dump",
            str(work / "database.dump"),
            "--manifest",
            str(work / "manifest.json"),
        ]
        if args.force:
            argv.append("--force")
        proc = as_postgres(*argv)
        for line in proc.stderr.splitlines():
            if line.strip() and not line.startswith("fedictl-backup: error: "):
                log(line)
        if proc.returncode == EXIT_REFUSED:
            raise Refused(_error_line(proc.stderr))
        if proc.returncode != 0:
            raise BackupError(_error_line(proc.stderr))
        result = json.loads(proc.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["snapshot"] = snap["id"]
    print(json.dumps(result))
    return 0 if result["ok"] else EXIT_FAILED


def cmd_db_manifest(args: argparse.Namespace) -> int:
    """As postgres: the manifest (rows and checksum per table, sequences) of a live database."""
    conn = _pg_connect(args.database)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    print(json.dumps(db_manifest(conn.cursor(), args.checksum_method)))
    conn.rollback()
    conn.close()
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Compare live data on this host with what a snapshot recorded; exit 1 when it differs."""
    restic = Restic(load_config())
    snap = find_snapshot(restic, args.snapshot, args.app, args.kind)
    if args.kind == "db":
        manifest = json.loads(restic.dump(snap["id"], snap["paths"][0] + "/manifest.json"))
        database = args.database or manifest["database"]
        proc = as_postgres(
            "_db-manifest", "--database", database,
            "--checksum-method", checksum_method(manifest),
        )  # fmt: skip
        if proc.returncode != 0:
            raise BackupError(_error_line(proc.stderr))
        result = compare_db(manifest, json.loads(proc.stdout))
        result["database"] = database
    else:
        raw = restic.dump(snap["id"], manifest_path_in(snap, args.kind))
        result = verify_manifest(json.loads(gzip.decompress(raw)))
    result.update(snapshot=snap["id"], kind=args.kind)
    print(json.dumps(result))
    return 0 if result["ok"] else EXIT_FAILED


def restore_db_check(args: argparse.Namespace) -> int:
    """--check: refuse now, before the app is stopped, what the restore itself would refuse."""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        print(json.dumps({"database": args.database, "state": "no server yet"}))
        return 0
    force = ["--force"] if args.force else []
    proc = as_postgres("_db-check", "--database", args.database, *force)
    if proc.returncode == EXIT_REFUSED:
        raise Refused(_error_line(proc.stderr))
    if proc.returncode != 0:
        raise BackupError(_error_line(proc.stderr))
    print(proc.stdout.strip())
    return 0


def find_snapshot(restic: Restic, wanted: str, app: str, kind: str) -> dict[str, Any]:
    snaps = [snapshot_info(s) for s in restic.snapshots("--tag", f"app:{app},kind:{kind}")]
    hits = [s for s in snaps if s["id"].startswith(wanted)]
    if len(hits) != 1:
        raise BackupError(
            f"{'no' if not hits else 'more than one'} {app} {kind} snapshot {wanted!r}"
        )
    return hits[0]


def check_destination(root: str, entries: dict[str, Any]) -> str:
    """'absent', 'empty', 'same' (identical file), or 'differs' for one restore root."""
    if not os.path.lexists(root):
        return "absent"
    st = os.lstat(root)
    if stat.S_ISDIR(st.st_mode):
        return "differs" if any(os.scandir(root)) else "empty"
    entry = entries.get(root)
    if (
        entry
        and entry["type"] == "file"
        and stat.S_ISREG(st.st_mode)
        and sha256_file(root) == entry["sha256"]
    ):
        return "same"
    return "differs"


def chown_tree(path: str, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), uid, gid)


def local_declaration(cfg: Config, app: str) -> Declaration | None:
    """This host's own declaration of the app (written by the app's role), or None."""
    path = cfg.declarations_dir / f"{app}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BackupError(f"{path}: invalid JSON ({exc})") from exc
    return parse_declaration(data, path)


def restore_roots(
    manifest: dict[str, Any],
    decl: Declaration | None,
    scratch: str,
    not_installed_yet: bool = False,
) -> list[str]:
    """The snapshot's roots, each refused unless this host's own declaration names it.

    A snapshot is data that any host holding the repository's password can write: it must not say
    where a restore writes. Every root must be an absolute, normal path inside the paths, the
    configuration files or the declaration file that the app's role declared on this host; with
    --scratch (a drill) everything lands under that directory instead, wherever the snapshot says.
    """
    roots = [str(r) for r in manifest.get("roots", [])]
    odd = [r for r in roots if not r.startswith("/") or os.path.normpath(r) != r or r == "/"]
    if odd:
        raise Refused(f"the snapshot names paths that are not absolute and normal: {odd[:5]}")
    if scratch or (decl is None and not_installed_yet):
        return roots
    if decl is None:
        raise Refused(
            "this host has no declaration of the app (its role writes one under "
            "/etc/fedictl/backup.d/): install the app here first (fedictl deploy), then restore"
        )
    allowed = [*decl.paths, *decl.config_files, str(decl.source)]
    outside = [r for r in roots if not any(_is_within(r, a) for a in allowed)]
    if outside:
        raise Refused(
            f"the snapshot would restore {', '.join(outside[:5])}, which {decl.app}'s declaration "
            f"on this host ({decl.source}) does not name; nothing was restored. A snapshot written "
            "by another host or by hand cannot choose where a restore writes"
        )
    return roots


def cmd_restore_files(args: argparse.Namespace) -> int:
    cfg = load_config()
    restic = Restic(cfg)
    snap = find_snapshot(restic, args.snapshot, args.app, args.kind)
    manifest = json.loads(
        gzip.decompress(restic.dump(snap["id"], manifest_path_in(snap, args.kind)))
    )
    scratch = args.scratch.rstrip("/")
    decl = local_declaration(cfg, args.app)
    # --check runs before a restore installs the app on a new server: no declaration yet is fine.
    roots = restore_roots(manifest, decl, scratch, not_installed_yet=args.check)
    entries = {scratch + path: entry for path, entry in manifest["entries"].items()}
    stamp = run_id(utcnow())
    states = {root: check_destination(scratch + root, entries) for root in roots}
    declaration = manifest.get("declaration")
    blocking = [r for r, s in states.items() if s == "differs" and r != declaration]
    if blocking and not args.force:
        raise Refused(
            f"{', '.join(blocking)} already exist{'s' if len(blocking) == 1 else ''} "
            "with other content; "
            "restore writes only into empty or missing paths. Pass --force to move them aside "
            f"(to PATH.pre-restore-{stamp}) and restore the backup in their place."
        )
    if args.check:
        print(json.dumps({"kind": args.kind, "states": states}))
        return 0
    # The owner is the one this host's declaration names (a drill's scratch copy stays root's).
    owner_name = "root" if scratch or decl is None else decl.owner
    if args.owner and args.owner != owner_name:
        raise Refused(
            f"--owner {args.owner}: this host's declaration of {args.app} says {owner_name}"
        )
    try:
        owner = pwd.getpwnam(owner_name)
    except KeyError as exc:
        raise BackupError(f"user {owner_name} does not exist: create the app's user first") from exc
    moved = []
    restored = []
    for root in roots:
        if states[root] == "same" or (root == declaration and states[root] != "absent"):
            continue
        target = scratch + root
        parent = Path(target).parent
        created = []
        for p in [parent, *parent.parents]:
            if p.exists():
                break
            created.append(p)
        parent.mkdir(parents=True, exist_ok=True)
        for p in created:
            os.chmod(p, 0o755)  # noqa: S103 - a directory on the way to the app's data
            os.chown(p, owner.pw_uid, owner.pw_gid)
        stage = Path(tempfile.mkdtemp(prefix=".fedictl-restore-", dir=parent))
        try:
            restic.must(
                "restore",
                snap["id"],
                "--target",
                str(stage),
                "--include",
                root,
                what=f"restoring {root}",
                lock=False,
            )
            staged = stage / root.lstrip("/")
            if not os.path.lexists(staged):
                raise BackupError(f"snapshot {snap['short_id']} does not hold {root}")
            if states[root] == "differs":
                aside = f"{target}.pre-restore-{stamp}"
                os.rename(target, aside)
                moved.append(aside)
            elif states[root] == "empty":
                os.rmdir(target)
            os.rename(staged, target)
            if root != declaration:
                chown_tree(target, owner.pw_uid, owner.pw_gid)
            restored.append(root)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    result = verify_manifest(manifest, scratch)
    result.update(
        snapshot=snap["id"],
        kind=args.kind,
        restored=restored,
        moved_aside=moved,
        unchanged=[r for r, s in states.items() if s == "same"],
    )
    print(json.dumps(result))
    return 0 if result["ok"] else EXIT_FAILED


# --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedictl-backup", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="back up the apps of this host now")
    run.add_argument("--app", action="append", help="only this app (repeatable)")
    run.set_defaults(func=cmd_run)
    sub.add_parser("check", help="restic check of the repository").set_defaults(func=cmd_check)
    init = sub.add_parser("init-repo", help="create the repository unless it exists")
    init.add_argument("--no-create", action="store_true", help="only check it can be opened")
    init.set_defaults(func=cmd_init_repo)
    snaps = sub.add_parser("snapshots", help="the fedictl snapshots in the repository, as JSON")
    snaps.add_argument("--app")
    snaps.set_defaults(func=cmd_snapshots)
    plan = sub.add_parser("restore-plan", help="which snapshots a restore would use, as JSON")
    plan.add_argument("--app", required=True)
    plan.add_argument("--snapshot", default="")
    plan.set_defaults(func=cmd_restore_plan)
    rdb = sub.add_parser("restore-db", help="restore a database snapshot into a fresh database")
    for name in ("--app", "--snapshot", "--database", "--owner"):
        rdb.add_argument(name, required=True)
    rdb.add_argument("--force", action="store_true")
    rdb.add_argument("--check", action="store_true", help="only say whether it would be refused")
    rdb.set_defaults(func=cmd_restore_db)
    rfi = sub.add_parser("restore-files", help="restore a files or config snapshot in place")
    for name in ("--app", "--snapshot"):
        rfi.add_argument(name, required=True)
    rfi.add_argument("--kind", choices=["files", "config"], required=True)
    rfi.add_argument("--owner", default="", help="must be the owner this host's declaration names")
    rfi.add_argument(
        "--scratch", default="", help="a drill: restore under this directory, owned by root"
    )
    rfi.add_argument("--force", action="store_true")
    rfi.add_argument("--check", action="store_true", help="only say whether it would be refused")
    rfi.set_defaults(func=cmd_restore_files)
    ver = sub.add_parser("verify", help="compare live data with what a snapshot recorded")
    ver.add_argument("--app", required=True)
    ver.add_argument("--snapshot", required=True)
    ver.add_argument("--kind", choices=list(KINDS), required=True)
    ver.add_argument("--database", default="", help="db: this database, not the one backed up")
    ver.set_defaults(func=cmd_verify)
    man = sub.add_parser("_db-manifest")  # internal, runs as postgres
    man.add_argument("--database", required=True)
    man.add_argument("--checksum-method", choices=sorted(CHECKSUM_SQL), default=CHECKSUM_METHOD)
    man.set_defaults(func=cmd_db_manifest)
    dump = sub.add_parser("_db-dump")  # internal, runs as postgres
    dump.add_argument("--database", required=True)
    dump.add_argument("--out", required=True)
    dump.set_defaults(func=cmd_db_dump)
    rest = sub.add_parser("_db-restore")  # internal, runs as postgres
    for name in ("--database", "--owner", "--dump", "--manifest"):
        rest.add_argument(name, required=True)
    rest.add_argument("--force", action="store_true")
    rest.set_defaults(func=cmd_db_restore)
    chk = sub.add_parser("_db-check")  # internal, runs as postgres
    chk.add_argument("--database", required=True)
    chk.add_argument("--force", action="store_true")
    chk.set_defaults(func=cmd_db_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    umask = os.umask(0o077)
    try:
        code: int = args.func(args)
        return code
    except BackupError as exc:
        print(f"fedictl-backup: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(umask)


if __name__ == "__main__":
    sys.exit(main())
