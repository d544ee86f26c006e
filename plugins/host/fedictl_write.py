# fedictl's bulk file writer: one remote call puts many small files, directories and removals in
# place, where ansible.builtin.template/copy/file make a stat and a copy module call (~0.5 s) per
# file. The roles run it through the fedictl_sync_files action (plugins/action/):
#   python3 -c "<this file>" < request
#   request: {"check": bool, "diff": bool,
#             "items": [{"path", "state": "file"|"directory"|"absent"|"lines"|"link",
#                        "content" (file),
#                        "target" (link: what the symbolic link points to),
#                        "lines" (lines: [{"regexp", "line"}]), "mode" "0644", "owner", "group",
#                        "validate" (a command; %s is the candidate file), "diff" (false: keep
#                        the content out of the diff)}]}
#   output:  {"results": [{"path", "changed", "diff" (when asked)}], "failed": "message"}
# "lines" edits a file that must exist, as ansible.builtin.lineinfile does with regexp and line: the
# last line the regexp matches (re.search) becomes the line; with no match the line is appended.
# Items are applied in order and the first error stops the rest, as a failed task would. A file
# is replaced atomically (a candidate in the same directory, validated, then renamed over the live
# one); only what differs is touched. In check mode nothing is written. Shared by the roles.
from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
from typing import Any

Item = dict[str, Any]
Diff = dict[str, str] | None


class Failed(Exception):
    pass


def ids(item: Item) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(item.get("owner", "root")).pw_uid
        gid = grp.getgrnam(item.get("group", "root")).gr_gid
    except KeyError as exc:
        raise Failed(f"{item['path']}: no such owner or group: {exc.args[0]}") from None
    return uid, gid


def attributes_differ(st: os.stat_result, uid: int, gid: int, mode: int) -> bool:
    return st.st_uid != uid or st.st_gid != gid or stat.S_IMODE(st.st_mode) != mode


def text_or_note(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "(binary content)\n"


def current(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def write_file(item: Item, check: bool) -> tuple[bool, Diff]:
    path, content = item["path"], item.get("content", "").encode()
    uid, gid = ids(item)
    mode = int(item["mode"], 8)
    st = current(path)
    before = None
    if st is not None and stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            before = handle.read()
    elif st is not None:
        raise Failed(f"{path} exists and is not a regular file")
    if st is not None and before == content and not attributes_differ(st, uid, gid, mode):
        return False, None
    diff = {
        "before_header": path,
        "after_header": path,
        "before": "" if before is None else text_or_note(before),
        "after": text_or_note(content),
    }
    if check:
        return True, diff
    if before == content:  # only the owner, group or mode differ
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)
        return True, diff
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise Failed(f"{path}: its directory {directory} does not exist")
    candidate = os.path.join(directory, f".{os.path.basename(path)}.fedictl-{os.getpid()}")
    try:
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if item.get("validate"):
            command = item["validate"].replace("%s", candidate)
            proc = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                output = (proc.stderr or proc.stdout).strip()
                raise Failed(f"{path}: the new content failed validation ({command}): {output}")
        os.rename(candidate, path)
    finally:
        if os.path.lexists(candidate):
            os.unlink(candidate)
    return True, diff


def edit_lines(item: Item, check: bool) -> tuple[bool, Diff]:
    path = item["path"]
    st = current(path)
    if st is None or not stat.S_ISREG(st.st_mode):
        raise Failed(f"{path} does not exist or is not a regular file (its package installs it)")
    with open(path, "rb") as handle:
        lines = handle.read().decode().splitlines(keepends=True)
    for edit in item["lines"]:
        pattern, wanted = re.compile(edit["regexp"]), edit["line"] + "\n"
        matches = [index for index, line in enumerate(lines) if pattern.search(line.rstrip("\n"))]
        if matches:
            lines[matches[-1]] = wanted
        else:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(wanted)
    return write_file({**item, "content": "".join(lines)}, check)


def make_link(item: Item, check: bool) -> tuple[bool, Diff]:
    """A symbolic link to item["target"]; replaces a link elsewhere, never a file or directory."""
    path, target = item["path"], item["target"]
    st = current(path)
    if st is not None and not stat.S_ISLNK(st.st_mode):
        raise Failed(f"{path} exists and is not a symbolic link")
    was = os.readlink(path) if st is not None else None
    if was == target:
        return False, None
    diff = {"before": f"{path} -> {was or '(absent)'}\n", "after": f"{path} -> {target}\n"}
    if not check:
        candidate = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.fedictl-link")
        if os.path.lexists(candidate):
            os.unlink(candidate)
        os.symlink(target, candidate)
        os.rename(candidate, path)
    return True, diff


def make_directory(item: Item, check: bool) -> tuple[bool, Diff]:
    path = item["path"]
    uid, gid = ids(item)
    mode = int(item["mode"], 8)
    st = current(path)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise Failed(f"{path} exists and is not a directory")
    if st is not None and not attributes_differ(st, uid, gid, mode):
        return False, None
    was = "absent" if st is None else f"directory {stat.S_IMODE(st.st_mode):04o}"
    owner = f"{item.get('owner', 'root')}:{item.get('group', 'root')}"
    diff = {"before": f"{path}: {was}\n", "after": f"{path}: directory {mode:04o} {owner}\n"}
    if not check:
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, mode)
    return True, diff


def remove(item: Item, check: bool) -> tuple[bool, Diff]:
    path = item["path"]
    st = current(path)
    if st is None:
        return False, None
    diff = {"before": f"{path}: present\n", "after": f"{path}: absent\n"}
    if not check:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True, diff


def main() -> None:
    request = json.load(sys.stdin)
    apply = {
        "file": write_file,
        "directory": make_directory,
        "absent": remove,
        "lines": edit_lines,
        "link": make_link,
    }
    results: list[dict[str, Any]] = []
    output: dict[str, Any] = {"results": results}
    for item in request["items"]:
        try:
            changed, diff = apply[item.get("state", "file")](item, request.get("check", False))
        except (Failed, OSError, re.error, UnicodeDecodeError) as exc:
            output["failed"] = str(exc)
            break
        entry = {"path": item["path"], "changed": changed}
        if changed and request.get("diff") and item.get("diff", True):
            entry["diff"] = diff
        results.append(entry)
    json.dump(output, sys.stdout)


main()
