"""The shared state plugins (plugins/action/fedictl_state.py, fedictl_units.py, plugins/filter/).

fedictl_state decides, from one probe of the host, which parts of a role's declared state differ; a
wrong verdict either hides drift (a part reported as matching) or breaks idempotence. Its parsers
and
comparisons are tested here on real command output shapes; the whole action runs against this
machine
through a real ansible-playbook (local connection), on real files in a temporary directory.
"""

from __future__ import annotations

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


def _load(relative: str) -> Any:
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), ROOT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


state = _load("plugins/action/fedictl_state.py")
units_plugin = _load("plugins/action/fedictl_units.py")
filters = _load("plugins/filter/fedictl_verdicts.py")

SYSTEMCTL_SHOW = """Id=nginx.service
UnitFileState=enabled
ActiveState=active

Id=certbot.timer
UnitFileState=disabled
ActiveState=inactive

Id=missing.service
UnitFileState=
ActiveState=inactive
"""


def test_units_are_parsed_by_id() -> None:
    parsed = state.parse_units(SYSTEMCTL_SHOW)
    assert set(parsed) == {"nginx.service", "certbot.timer", "missing.service"}
    assert parsed["certbot.timer"] == {
        "Id": "certbot.timer", "UnitFileState": "disabled", "ActiveState": "inactive",
    }  # fmt: skip
    assert state.unit_id("nginx") == "nginx.service"
    assert state.unit_id("certbot.timer") == "certbot.timer"


def test_only_installed_packages_count() -> None:
    lines = [
        "nginx installed",
        "certbot not-installed",
        "redis-server config-files",
        "libc6:amd64 installed",
    ]
    assert state.parse_installed(lines) == {"nginx", "libc6"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UMASK\t022\nPASS_MAX_DAYS\t99999\n", False),  # another value
        ("UMASK\t027\n", True),
        ("UMASK\t027\n# UMASK\t022\nUMASK\t022\n", False),  # the last match wins, as lineinfile
        ("UMASK\t022\nUMASK\t027\n", True),
        ("PASS_MAX_DAYS\t99999\n", False),  # no match: the writer would append the line
        (None, False),  # the file is missing
    ],
)
def test_lines_follow_lineinfile(text: str | None, expected: bool) -> None:
    assert state.lines_match(text, r"^UMASK\s", "UMASK\t027") is expected


def _have(**kw: Any) -> dict[str, Any]:
    entry = {
        "isreg": True, "isdir": False, "islnk": False, "pw_name": "root", "gr_name": "root",
        "mode": "0644", "checksum": "abc",
    }  # fmt: skip
    entry.update(kw)
    return entry


def test_file_verdicts() -> None:
    want = {"path": "/etc/x", "mode": "0644"}
    assert state.file_matches(want, _have(), "abc")
    assert not state.file_matches(want, _have(), "def"), "other content"
    assert not state.file_matches(want, _have(mode="0640"), "abc"), "other mode"
    assert not state.file_matches({**want, "owner": "redis"}, _have(), "abc"), "other owner"
    assert not state.file_matches(want, None, "abc"), "missing"
    assert state.file_matches(want, _have(checksum="zzz"), None), "owner and mode only"
    assert not state.file_matches(want, _have(isreg=False, isdir=True), None), "a directory"
    directory = {"path": "/etc/x.d", "state": "directory", "mode": "0755"}
    assert state.file_matches(directory, _have(isreg=False, isdir=True, mode="0755"), None)
    assert not state.file_matches(directory, _have(mode="0755"), None), "a file, not a directory"
    assert state.file_matches({"path": "/etc/x", "state": "absent"}, None, None)
    assert not state.file_matches({"path": "/etc/x", "state": "absent"}, _have(), None)


def test_unit_and_command_verdicts() -> None:
    running = {"enabled": True, "active": True}
    assert state.unit_ok({"enabled": True, "active": True}, running)
    assert not state.unit_ok({"enabled": False, "active": None}, running)
    assert state.unit_ok({"enabled": True, "active": None}, {"enabled": True, "active": False})
    out = {"rc": 0, "stdout": "a\nb\n", "stdout_lines": ["a", "b"]}
    assert state.command_ok({}, out)
    assert state.command_ok({"lines": ["b"]}, out)
    assert not state.command_ok({"lines": ["c"]}, out)
    assert not state.command_ok({"stdout_lines": ["b", "a"]}, out), "order counts"
    assert not state.command_ok({"rc": 1}, out)
    assert not state.command_ok({"stdout": ""}, out)


def test_the_units_filter_uses_the_same_verdict() -> None:
    live = {"a": {"enabled": True, "active": True}, "b": {"enabled": True, "active": False}}
    declared = ["a", {"name": "b", "active": None}, {"name": "a", "enabled": False}]
    assert filters.units_pending(declared, live) == [
        {"name": "a", "enabled": False, "active": True}
    ]
    assert len(filters.units_pending(declared, live, gates_open=True)) == 3


def test_the_units_program_changes_only_what_differs() -> None:
    program = units_plugin.program(
        [{"name": "nginx", "enabled": True, "active": True},
         {"name": "unattended-upgrades", "enabled": False, "active": None}],
        check=False,
    )  # fmt: skip
    assert "systemctl is-enabled --quiet -- nginx" in program
    assert "systemctl enable --quiet -- nginx" in program
    assert "systemctl start --quiet -- nginx" in program
    assert "systemctl disable --quiet -- unattended-upgrades" in program
    assert "is-active --quiet -- unattended-upgrades" not in program, "null leaves it alone"
    dry = units_plugin.program([{"name": "nginx", "enabled": True, "active": True}], check=True)
    assert "systemctl enable" not in dry and "systemctl start" not in dry


def test_the_units_program_runs_against_a_fake_systemctl(tmp_path: Path) -> None:
    """The shell program itself, with a systemctl that knows one enabled, stopped unit."""
    fake = tmp_path / "systemctl"
    log = tmp_path / "calls"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$1 $4" in "is-enabled web") exit 0;; "is-active web") exit 3;; esac\n'
        'case "$1" in is-*) exit 1;; esac\n'
    )
    fake.chmod(0o755)
    program = units_plugin.program(
        [{"name": "web", "enabled": True, "active": True},
         {"name": "old", "enabled": False, "active": None}],
        check=False,
    )  # fmt: skip
    proc = subprocess.run(
        ["/bin/sh", "-s"], input=program, capture_output=True, text=True, check=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert proc.stdout.split("\n")[:-1] == ["start web"], "enabled already; old is not enabled"
    assert "enable --quiet -- web" not in log.read_text()


PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Probe
      fedictl_state:
        files:
          - {path: "{{ d }}/same.conf", content: "kept\\n", mode: "0640",
             owner: "{{ me }}", group: "{{ grp }}"}
          - {path: "{{ d }}/other.conf", content: "wanted\\n", mode: "0644",
             owner: "{{ me }}", group: "{{ grp }}"}
          - {path: "{{ d }}/skip.conf", content: "x", mode: "0644", enabled: false}
          - {path: "{{ d }}/gone", state: absent}
        lines:
          - {path: "{{ d }}/defs", regexp: '^UMASK\\s', line: "UMASK\\t027"}
          - {path: "{{ d }}/defs", regexp: '^PASS_MAX_DAYS\\s', line: "PASS_MAX_DAYS\\t90"}
        packages: [fedictl-surely-not-installed]
        commands:
          good: {argv: [echo, ready], expect: {lines: [ready]}}
          bad: {sh: "echo nope; exit 3", expect: {rc: 0}}
          info: {argv: [echo, hello]}
      register: probe
    - name: Show
      ansible.builtin.copy:
        content: "{{ probe | to_json }}"
        dest: "{{ d }}/result.json"
        mode: "0600"
"""


@pytest.fixture
def played(tmp_path: Path) -> Any:
    import grp
    import pwd

    (tmp_path / "same.conf").write_text("kept\n")
    (tmp_path / "same.conf").chmod(0o640)
    (tmp_path / "other.conf").write_text("drifted\n")
    (tmp_path / "other.conf").chmod(0o644)
    (tmp_path / "gone").write_text("left over")
    (tmp_path / "defs").write_text("UMASK\t027\nPASS_MAX_DAYS\t99999\n")
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name

    def run(*extra: str) -> dict[str, Any]:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        }
        subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
             "-e", json.dumps({"d": str(tmp_path), "me": me, "grp": group}), *extra],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads((tmp_path / "result.json").read_text())
        return result

    return run, tmp_path


def test_the_action_reports_each_part_that_differs(played: Any) -> None:
    run, d = played
    result = run()
    assert result["changed"] is False
    assert result["differs"] is True
    assert [f["path"] for f in result["files_pending"]] == [f"{d}/other.conf", f"{d}/gone"]
    assert result["lines_pending"] == [
        {"path": f"{d}/defs", "state": "lines", "mode": "0644", "owner": "root", "group": "root",
         "lines": [{"regexp": r"^PASS_MAX_DAYS\s", "line": "PASS_MAX_DAYS\t90"}]},
    ]  # fmt: skip
    assert result["packages_missing"] == ["fedictl-surely-not-installed"]
    assert result["commands"]["good"]["ok"] and not result["commands"]["good"]["differs"]
    assert not result["commands"]["bad"]["ok"] and result["commands"]["bad"]["differs"]
    assert result["commands"]["info"]["stdout_lines"] == ["hello"]
    assert result["parts"] == {
        "files": True, "lines": True, "packages": True, "units": False, "commands": True,
    }  # fmt: skip
    assert f"{d}/skip.conf" not in result["found"], "enabled: false leaves an item out"
    sha = hashlib.sha1(b"kept\n", usedforsecurity=False).hexdigest()
    assert result["found"][f"{d}/same.conf"]["checksum"] == sha


def test_with_the_gates_open_every_part_differs(played: Any) -> None:
    run, _ = played
    result = run("-e", "fedictl_gates_open=true")
    assert result["gates_open"] is True and result["differs"] is True
    assert len(result["files_pending"]) == 3, "the matching file too"
    assert result["commands"]["good"]["ok"], "ok stays the live verdict"
    assert result["commands"]["good"]["differs"]


net = _load("plugins/test/fedictl_net.py")


@pytest.mark.parametrize(
    ("value", "address", "network"),
    [
        ("127.0.0.1", True, True),
        ("::1", True, True),
        ("10.213.0.0/24", False, True),
        ("10.0.0.5/24", False, True),  # host bits set: pg_hba.conf and nftables accept it
        ("2001:db8::/32", False, True),
        ("10.0.0.256", False, False),
        ("0.0.0.0/33", False, False),
        ("localhost", False, False),
        ("", False, False),
        (10, False, False),  # not text
    ],
)
def test_the_shared_ip_tests(value: Any, address: bool, network: bool) -> None:
    tests = net.TestModule().tests()
    assert tests["fedictl_ip_address"](value) is address
    assert tests["fedictl_ip_network"](value) is network


def test_links_are_declared_by_target(tmp_path: Path) -> None:
    """A link item: the probe reports the link's own target, the writer replaces a link to
    elsewhere atomically and refuses to replace a regular file."""
    want = {"path": str(tmp_path / "enabled"), "state": "link", "target": "/etc/a"}
    assert state.file_matches(want, _have(islnk=True, isreg=False, lnk_target="/etc/a"), None)
    assert not state.file_matches(want, _have(islnk=True, isreg=False, lnk_target="/etc/b"), None)
    assert not state.file_matches(want, None, None)
    writer = (ROOT / "plugins/host/fedictl_write.py").read_text()

    def write(*items: dict[str, Any]) -> dict[str, Any]:
        request = json.dumps({"check": False, "diff": True, "items": list(items)})
        proc = subprocess.run(
            [sys.executable, "-c", writer], input=request, capture_output=True, text=True,
            check=True,
        )  # fmt: skip
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    link = tmp_path / "enabled"
    link.symlink_to("/etc/b")
    first = write({"path": str(link), "state": "link", "target": "/etc/a"})
    again = write({"path": str(link), "state": "link", "target": "/etc/a"})
    assert first["results"][0]["changed"] and os.readlink(link) == "/etc/a"
    assert not again["results"][0]["changed"]
    plain = tmp_path / "plain"
    plain.write_text("keep")
    refused = write({"path": str(plain), "state": "link", "target": "/etc/a"})
    assert "is not a symbolic link" in refused["failed"] and plain.read_text() == "keep"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("social.example.org", True),
        ("a.bc", True),
        ("xn--bcher-kva.example", True),
        ("ab.c", False),  # a one-letter top-level label
        ("example", False),  # one label
        ("-a.example.org", False),
        ("a-.example.org", False),
        ("Social.Example.org", False),  # lower case only
        ("a..example", False),
        ("example.123", False),
        (("a" * 63 + ".") * 3 + "a" * 61 + ".org", False),  # 257 characters
        (("a" * 63 + ".") * 3 + "a" * 57 + ".org", True),  # 253
    ],
)
def test_the_shared_domain_test(value: str, ok: bool) -> None:
    """The roles' test and fedictl validate apply the same rule (fedictl/names.py)."""
    from fedictl import validate

    assert net.TestModule().tests()["fedictl_domain"](value) is ok
    assert validate.is_domain(value) is ok
