# fedictl's read-only host probe: one remote call that reports the state of many files, the text of
# a few, and the output of a few read-only commands, instead of one Ansible module (~0.2 s of
# start-up each) per question. The fedictl_state action runs it as `python3 -c "<this file>"` with
# the spec on standard input (never on the command line: a command's spec may name secrets' paths).
#   spec:   {"paths": [path or glob, ...], "read": [path, ...],
#            "run": {name: [argv...] | {"sh": "shell text"}}}
#   output: {"files": [{path, isreg, isdir, islnk, pw_name, gr_name, mode "0644", mtime, size,
#                       checksum (sha1, regular files), lnk_source and lnk_target (links)}],
#            "read": {path: text or null (missing or unreadable)},
#            "run": {name: {rc, stdout, stdout_lines, stderr}}}
# It changes nothing on the host. Runs on the servers' python3 (standard library only).
from __future__ import annotations

import contextlib
import glob
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def name_of(lookup: Callable[[int], Any], number: int) -> str:
    try:
        return str(lookup(number)[0])
    except KeyError:
        return str(number)


def describe(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    entry: dict[str, Any] = {
        "path": path,
        "isreg": stat.S_ISREG(st.st_mode),
        "isdir": stat.S_ISDIR(st.st_mode),
        "islnk": stat.S_ISLNK(st.st_mode),
        "pw_name": name_of(pwd.getpwuid, st.st_uid),
        "gr_name": name_of(grp.getgrgid, st.st_gid),
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "mtime": st.st_mtime,
        "size": st.st_size,
    }
    if entry["islnk"]:
        entry["lnk_source"] = os.path.realpath(path)
        entry["lnk_target"] = os.readlink(path)
    if entry["isreg"]:
        digest = hashlib.sha1(usedforsecurity=False)  # compared with the rendered templates' sha1
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(65536), b""):
                digest.update(block)
        entry["checksum"] = digest.hexdigest()
    return entry


def run(command: list[str] | dict[str, str]) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            command["sh"] if isinstance(command, dict) else command,
            shell=isinstance(command, dict),
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            env=dict(os.environ, LC_ALL="C.UTF-8", SYSTEMD_PAGER="", SYSTEMD_COLORS="0"),
        )
    except OSError as error:  # the program is not installed (yet)
        return {"rc": 127, "stdout": "", "stdout_lines": [], "stderr": str(error)}
    return {
        "rc": proc.returncode,
        "stdout": proc.stdout,
        "stdout_lines": proc.stdout.splitlines(),
        "stderr": proc.stderr,
    }


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except OSError:
        return None


def files(patterns: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            if path in seen or not os.path.lexists(path):
                continue
            seen.add(path)
            # Gone between the two looks, or unreadable: reported as absent.
            with contextlib.suppress(OSError):
                found.append(describe(path))
    return found


def main() -> None:
    spec = json.load(sys.stdin)
    commands = spec.get("run", {})
    # The commands are independent and read-only: side by side, the probe takes as long as the
    # slowest (fail2ban-client, psql) instead of their sum.
    with ThreadPoolExecutor(max_workers=max(1, len(commands))) as pool:
        running = {name: pool.submit(run, command) for name, command in commands.items()}
        result = {
            "files": files(spec.get("paths", [])),
            "read": {path: read(path) for path in spec.get("read", [])},
            "run": {name: done.result() for name, done in running.items()},
        }
    json.dump(result, sys.stdout, ensure_ascii=True, default=str)


main()
