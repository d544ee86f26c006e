"""The roles' read-only host probe (plugins/host/fedictl_probe.py), postgresql's SCRAM filter.

The probe is what lets a re-converge skip every step whose state already matches, so what it
reports must be what ansible.builtin.find and the commands would: it runs here on real files, as
the roles run it on a host (python3 -c SCRIPT SPEC). The filter decides whether an owner's
password must be set again; it is checked against a verifier PostgreSQL itself made.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "plugins/host/fedictl_probe.py"


def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.read_text()],
        input=json.dumps(spec), capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_files_are_reported_like_find_does(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("key = value\n")
    conf.chmod(0o640)
    empty = tmp_path / "empty"
    empty.write_text("")
    folder = tmp_path / "conf.d"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    link = tmp_path / "current"
    link.symlink_to(conf)

    found = _probe(
        {"paths": [str(conf), str(empty), str(folder), str(link), str(tmp_path / "missing")]}
    )

    by_path = {entry["path"]: entry for entry in found["files"]}
    assert list(by_path) == [str(conf), str(empty), str(folder), str(link)], (
        "missing paths are left out"
    )
    st = os.lstat(conf)
    assert by_path[str(conf)] == {
        "path": str(conf), "isreg": True, "isdir": False, "islnk": False,
        "pw_name": "root" if st.st_uid == 0 else by_path[str(conf)]["pw_name"],
        "gr_name": by_path[str(conf)]["gr_name"], "mode": "0640", "mtime": st.st_mtime, "size": 12,
        "checksum": hashlib.sha1(b"key = value\n", usedforsecurity=False).hexdigest(),
    }  # fmt: skip
    assert by_path[str(empty)]["checksum"] == hashlib.sha1(b"", usedforsecurity=False).hexdigest()
    assert by_path[str(folder)]["isdir"] and by_path[str(folder)]["mode"] == "0750"
    assert "checksum" not in by_path[str(folder)]
    assert by_path[str(link)]["islnk"] and not by_path[str(link)]["isreg"]
    assert by_path[str(link)]["lnk_source"] == str(conf)


def test_globs_expand_and_each_path_is_reported_once(tmp_path: Path) -> None:
    for name in ("fedictl-tls-a.conf", "fedictl-tls-b.conf", "other.conf"):
        (tmp_path / name).write_text(name)

    found = _probe(
        {"paths": [str(tmp_path / "fedictl-tls-*.conf"), str(tmp_path / "fedictl-tls-a.conf")]}
    )

    assert [Path(entry["path"]).name for entry in found["files"]] == [
        "fedictl-tls-a.conf",
        "fedictl-tls-b.conf",
    ]


def test_commands_report_their_exit_code_and_output(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("")
    found = _probe(
        {
            "run": {
                "listing": ["ls", "-1", str(tmp_path)],
                "failing": ["ls", str(tmp_path / "missing")],
                "absent": ["fedictl-no-such-program"],
                "shell": {"sh": "printf '%s\\n' one two; exit 3"},
                "locale": {"sh": "echo $LC_ALL"},
            }
        }
    )["run"]

    assert found["listing"] == {"rc": 0, "stdout": "a\n", "stdout_lines": ["a"], "stderr": ""}
    assert found["failing"]["rc"] == 2 and "missing" in found["failing"]["stderr"]
    assert found["absent"]["rc"] == 127, "a program not installed yet is not an error of the probe"
    assert found["shell"]["rc"] == 3 and found["shell"]["stdout_lines"] == ["one", "two"]
    assert found["locale"]["stdout_lines"] == ["C.UTF-8"], "commands answer in a fixed locale"


def test_commands_run_side_by_side(tmp_path: Path) -> None:
    now = 'python3 -c "import time; print(time.time())" >> {0}'
    span = f"{now}; sleep 0.3; {now}"
    _probe({"run": {name: {"sh": span.format(tmp_path / name)} for name in ("a", "b")}})

    (start_a, end_a), (start_b, end_b) = (
        [float(t) for t in (tmp_path / name).read_text().split()] for name in ("a", "b")
    )
    assert max(start_a, start_b) < min(end_a, end_b), "one command waited for the other"


def test_the_probe_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("x")
    before = os.stat(conf)

    _probe({"paths": [str(conf)], "run": {"cat": ["cat", str(conf)]}})

    after = os.stat(conf)
    assert (after.st_mtime_ns, after.st_mode, sorted(os.listdir(tmp_path))) == (
        before.st_mtime_ns, before.st_mode, ["app.conf"],
    )  # fmt: skip


def _scram_filter(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(
        "scram", ROOT / "roles/postgresql/filter_plugins/scram.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filters = module.FilterModule().filters()
    return filters[name]


def _scram_matches() -> Any:
    return _scram_filter("postgresql_scram_matches")


# Made by PostgreSQL 17 (pg_authid.rolpassword) for the infra scenario's TEST-ONLY owner password.
VERIFIER = (
    "SCRAM-SHA-256$4096:okEw0glXkElm4TW0/lbi3Q==$gY6uoU599+cWCuxIR7URO45a0BYCq7/NWzKioazvLyk="
    ":nU6G+79RV80D2fHmrHUw6P/WeprJuARyZpKFoIVb9l4="
)
PASSWORD = "TEST-ONLY-in-video-pw-90c4d3"


def test_scram_accepts_the_password_postgresql_stored() -> None:
    assert _scram_matches()(VERIFIER, PASSWORD) is True


@pytest.mark.parametrize(
    ("verifier", "password"),
    [
        (VERIFIER, PASSWORD + "x"),
        (VERIFIER, ""),
        (VERIFIER.replace("gY6u", "gY6v"), PASSWORD),  # another stored key
        ("md5" + hashlib.md5(b"secret").hexdigest(), PASSWORD),  # noqa: S324 - an MD5 role password
        ("", PASSWORD),  # no password at all
        ("SCRAM-SHA-256$4096:not-base64!$a:b", PASSWORD),
        (VERIFIER, "TEST-ONLY-pässword"),  # SASLprep could change it: set it again
        (None, PASSWORD),
    ],
)
def test_scram_says_no_otherwise_so_the_role_sets_the_password(
    verifier: object, password: str
) -> None:
    assert _scram_matches()(verifier, password) is False


def test_scram_verifier_is_what_postgresql_stores_for_the_password() -> None:
    make = _scram_filter("postgresql_scram_verifier")
    first, second = make(PASSWORD), make(PASSWORD)
    # PostgreSQL's own layout and defaults: 4096 iterations, a 16-byte salt, 32-byte keys.
    method, params, keys = first.split("$")
    iterations, salt = params.split(":")
    stored_key, server_key = keys.split(":")
    assert (method, iterations) == ("SCRAM-SHA-256", "4096")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(stored_key)) == len(base64.b64decode(server_key)) == 32
    # A fresh salt each time, and each verifier belongs to the password and to no other.
    assert first != second
    assert _scram_matches()(first, PASSWORD) and _scram_matches()(second, PASSWORD)
    assert not _scram_matches()(first, PASSWORD + "x")


@pytest.mark.parametrize("password", ["", "TEST-ONLY-pässword", None])
def test_scram_verifier_leaves_to_the_server_what_it_cannot_make(password: object) -> None:
    # Empty: validation refuses it earlier. Non-ASCII: SASLprep may change it; the server hashes it.
    assert _scram_filter("postgresql_scram_verifier")(password) == ""
