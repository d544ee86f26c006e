# fedictl's read-only host probe: one remote call that reports the state of many files and the
# output of a few read-only commands, instead of one Ansible module (~0.3 s of start-up each) per
# question. Roles run it with ansible.builtin.raw: python3 -c "<this file>" '<spec as JSON>'.
#   spec:   {"paths": [path or glob, ...], "run": {name: [argv...] | {"sh": "shell text"}}}
#   output: {"files": [{path, isreg, isdir, islnk, pw_name, gr_name, mode "0644", mtime, size,
#                       checksum (sha1, regular files), lnk_source (links)}],
#            "run": {name: {rc, stdout, stdout_lines, stderr}}}
# "files" has the shape of ansible.builtin.find's result, so the roles compare it the same way.
# It changes nothing on the host. Shared by the fedictl roles (the others link to this file).
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
from concurrent.futures import ThreadPoolExecutor


def name_of(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def describe(path):
    st = os.lstat(path)
    entry = {
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
    if entry["isreg"]:
        digest = hashlib.sha1(usedforsecurity=False)  # compared with find's checksums
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(65536), b""):
                digest.update(block)
        entry["checksum"] = digest.hexdigest()
    return entry


def run(command):
    shell = isinstance(command, dict)
    try:
        proc = subprocess.run(
            command["sh"] if shell else command,
            shell=shell,
            capture_output=True,
            text=True,
            errors="replace",
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


def main():
    spec = json.loads(sys.argv[1])
    commands = spec.get("run", {})
    # The commands are independent and read-only: side by side, the probe takes as long as the
    # slowest (fail2ban-client, psql) instead of their sum.
    pool = ThreadPoolExecutor(max_workers=max(1, len(commands)))
    running = {name: pool.submit(run, command) for name, command in commands.items()}
    files, seen = [], set()
    for pattern in spec.get("paths", []):
        for path in sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]:
            if path in seen or not os.path.lexists(path):
                continue
            seen.add(path)
            # Gone between the two looks, or unreadable: reported as absent.
            with contextlib.suppress(OSError):
                files.append(describe(path))
    result = {"files": files, "run": {name: done.result() for name, done in running.items()}}
    pool.shutdown()
    json.dump(result, sys.stdout)


main()
