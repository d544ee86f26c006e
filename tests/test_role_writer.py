"""The roles' bulk file writer: the fedictl_sync_files action and the script it runs on the host.

A role writes its files in a few fedictl_sync_files calls instead of a template task (a stat and a
copy module on the host) per file, so the writer must do what those modules did: the same content,
owner, group and mode, only what differs, atomically, with the validate command run on the
candidate and nothing written in check mode. The script runs here on real files, as the action runs
it on a host (python3 -c SCRIPT, the request on standard input); the action runs under the real
ansible-playbook against this machine."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRITER = ROOT / "plugins/host/fedictl_write.py"
ACTION = ROOT / "plugins/action/fedictl_sync_files.py"
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _write(items: list[dict[str, Any]], *, check: bool = False, diff: bool = True) -> Any:
    request = {"check": check, "diff": diff, "items": items}
    proc = subprocess.run(
        [sys.executable, "-c", WRITER.read_text()],
        input=json.dumps(request), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


def _file(path: Path, content: str, mode: str = "0644", **extra: Any) -> dict[str, Any]:
    return {
        "path": str(path),
        "content": content,
        "mode": mode,
        "owner": OWNER,
        "group": GROUP,
        **extra,
    }


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o7777


def test_files_are_written_then_left_alone(tmp_path: Path) -> None:
    conf, secret = tmp_path / "app.conf", tmp_path / "secret.conf"
    items = [_file(conf, "key = value\n"), _file(secret, "password = x\n", "0640")]

    first = _write(items)
    again = _write(items)

    assert [entry["changed"] for entry in first["results"]] == [True, True]
    assert conf.read_text() == "key = value\n" and _mode(conf) == 0o644
    assert secret.read_text() == "password = x\n" and _mode(secret) == 0o640
    assert [entry["changed"] for entry in again["results"]] == [False, False]
    assert "failed" not in again
    assert sorted(os.listdir(tmp_path)) == ["app.conf", "secret.conf"], "no candidate left behind"


def test_only_the_mode_is_corrected_when_only_the_mode_differs(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("key = value\n")
    conf.chmod(0o666)
    inode = os.stat(conf).st_ino

    result = _write([_file(conf, "key = value\n")])

    assert result["results"][0]["changed"]
    assert _mode(conf) == 0o644
    assert os.stat(conf).st_ino == inode, "the file was not rewritten"


def test_a_changed_file_is_replaced_atomically_with_a_diff(tmp_path: Path) -> None:
    conf = tmp_path / "app.conf"
    conf.write_text("key = old\n")
    inode = os.stat(conf).st_ino

    result = _write([_file(conf, "key = new\n")])

    assert conf.read_text() == "key = new\n"
    assert os.stat(conf).st_ino != inode, "a new file renamed over the old one"
    assert result["results"][0]["diff"] == {
        "before_header": str(conf), "after_header": str(conf),
        "before": "key = old\n", "after": "key = new\n",
    }  # fmt: skip


def test_check_mode_reports_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    conf, folder, stale = tmp_path / "app.conf", tmp_path / "conf.d", tmp_path / "stale.conf"
    conf.write_text("key = old\n")
    stale.write_text("x\n")

    result = _write(
        [
            _file(conf, "key = new\n"),
            {
                "path": str(folder),
                "state": "directory",
                "mode": "0755",
                "owner": OWNER,
                "group": GROUP,
            },
            {"path": str(stale), "state": "absent"},
        ],
        check=True,
    )

    assert [entry["changed"] for entry in result["results"]] == [True, True, True]
    assert result["results"][0]["diff"]["after"] == "key = new\n"
    assert conf.read_text() == "key = old\n" and stale.exists() and not folder.exists()


def test_directories_are_made_and_removals_done(tmp_path: Path) -> None:
    folder = tmp_path / "conf.d"
    stale_file, stale_dir = tmp_path / "stale.conf", tmp_path / "old.d"
    stale_file.write_text("x\n")
    stale_dir.mkdir()
    (stale_dir / "inside").write_text("y\n")
    items = [
        {"path": str(folder), "state": "directory", "mode": "0750", "owner": OWNER, "group": GROUP},
        _file(folder / "in.conf", "a\n"),
        {"path": str(stale_file), "state": "absent"},
        {"path": str(stale_dir), "state": "absent"},
        {"path": str(tmp_path / "never-there"), "state": "absent"},
    ]

    first = _write(items)
    again = _write(items)

    assert [entry["changed"] for entry in first["results"]] == [True, True, True, True, False]
    assert folder.is_dir() and _mode(folder) == 0o750 and (folder / "in.conf").read_text() == "a\n"
    assert not stale_file.exists() and not stale_dir.exists()
    assert not any(entry["changed"] for entry in again["results"])


def test_a_candidate_that_fails_validation_leaves_the_live_file_and_stops(tmp_path: Path) -> None:
    conf, after = tmp_path / "app.conf", tmp_path / "after.conf"
    conf.write_text("good\n")
    rule = "import sys; sys.exit('bad line' if 'bad' in open(sys.argv[1]).read() else 0)"
    check = f'{sys.executable} -c "{rule}" %s'

    result = _write([_file(conf, "bad\n", validate=check), _file(after, "later\n")])

    assert conf.read_text() == "good\n"
    assert "failed validation" in result["failed"] and "bad line" in result["failed"]
    assert str(conf) in result["failed"]
    assert not after.exists(), "items after a failure are not applied"
    assert sorted(os.listdir(tmp_path)) == ["app.conf"], "the candidate is removed"

    passed = _write([_file(conf, "fine\n", validate=check)])
    assert "failed" not in passed and conf.read_text() == "fine\n"


def test_secrets_stay_out_of_the_diff(tmp_path: Path) -> None:
    secret, plain = tmp_path / "redis.conf", tmp_path / "plain.conf"

    result = _write(
        [_file(secret, "requirepass s3cret\n", "0640", diff=False), _file(plain, "a\n")]
    )
    quiet = _write([_file(plain, "b\n")], diff=False)

    assert "diff" not in result["results"][0] and "s3cret" not in json.dumps(result)
    assert result["results"][1]["diff"]["after"] == "a\n"
    assert "diff" not in quiet["results"][0]


def test_errors_name_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()

    missing_dir = _write([_file(tmp_path / "no" / "such.conf", "a\n")])
    not_a_file = _write([_file(folder, "a\n")])
    no_owner = _write([{**_file(tmp_path / "x.conf", "a\n"), "owner": "no-such-user-fedictl"}])

    assert (
        "its directory" in missing_dir["failed"] and str(tmp_path / "no") in missing_dir["failed"]
    )
    assert f"{folder} exists and is not a regular file" in not_a_file["failed"]
    assert "no-such-user-fedictl" in no_owner["failed"]


LOGIN_DEFS = "# comment UMASK 077\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\nUMASK 002\nENV_PATH x"


def _lines(path: Path, *edits: tuple[str, str]) -> dict[str, Any]:
    item = _file(path, "", state="lines", lines=[{"regexp": r, "line": ln} for r, ln in edits])
    del item["content"]
    return item


def test_lines_are_edited_as_lineinfile_does(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text(LOGIN_DEFS)
    defs.chmod(0o600)
    edits = [
        (r"^UMASK\s", "UMASK\t027"),  # two matches: the last one is replaced
        (r"^PASS_MAX_DAYS\s", "PASS_MAX_DAYS\t365"),  # one match, replaced in place
        (r"^PASS_MIN_DAYS\s", "PASS_MIN_DAYS\t1"),  # none: appended, after a newline
    ]

    first = _write([_lines(defs, *edits)])
    again = _write([_lines(defs, *edits)])

    assert first["results"][0]["changed"] and "failed" not in first
    assert defs.read_text() == (
        "# comment UMASK 077\nUMASK\t\t022\nPASS_MAX_DAYS\t365\nUMASK\t027\nENV_PATH x\n"
        "PASS_MIN_DAYS\t1\n"
    )
    assert _mode(defs) == 0o644, "the item's mode is applied, as lineinfile's mode"
    diff = first["results"][0]["diff"]
    assert diff["before"] == LOGIN_DEFS and diff["after"] == defs.read_text()
    assert again["results"][0]["changed"] is False


def test_lines_need_the_file_and_check_mode_writes_nothing(tmp_path: Path) -> None:
    defs = tmp_path / "login.defs"
    defs.write_text(LOGIN_DEFS)

    missing = _write([_lines(tmp_path / "sysstat", ("^ENABLED=", 'ENABLED="true"'))])
    dry = _write([_lines(defs, (r"^UMASK\s", "UMASK\t027"))], check=True)

    assert f"{tmp_path / 'sysstat'} does not exist" in missing["failed"]
    assert not (tmp_path / "sysstat").exists()
    assert dry["results"][0]["changed"] and defs.read_text() == LOGIN_DEFS


def test_no_role_carries_its_own_copy_of_the_shared_plugins() -> None:
    """The shared plugins live in plugins/ (ansible.cfg), never copied or linked into a role."""
    copies = [
        p for p in (ROOT / "roles").rglob("*.py")
        if p.name.startswith("fedictl_") and p.parent.name in {"action_plugins", "files"}
        and p.name != "fedictl_backup.py"
    ]  # fmt: skip
    assert copies == []


PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    greeting: hello
  tasks:
    - name: Write the files
      fedictl_sync_files:
        items:
          - {{path: "{base}/conf.d", state: directory, mode: '0755',
             owner: {owner}, group: {group}}}
          - {{path: "{base}/conf.d/app.conf", src: app.conf.j2, mode: '0640',
             owner: {owner}, group: {group}, vars: {{name: world}}}}
          - {{path: "{base}/stale.conf", state: absent}}
      register: written
    - name: Show what was written
      ansible.builtin.debug:
        msg: "CHANGED_PATHS={{{{ written.changed_paths | join(',') }}}}"
"""


def _playbook(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_ACTION_PLUGINS": str(ACTION.parent),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(tmp_path / "play.yml"), *flags],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip


def test_the_action_renders_templates_and_honours_check_and_diff(tmp_path: Path) -> None:
    base = tmp_path / "target"
    base.mkdir()
    (base / "stale.conf").write_text("old\n")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.conf.j2").write_text("{{ greeting }} {{ name }}\n")
    (tmp_path / "play.yml").write_text(PLAYBOOK.format(base=base, owner=OWNER, group=GROUP))
    conf = base / "conf.d" / "app.conf"

    dry = _playbook(tmp_path, "--check", "--diff")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "+hello world" in dry.stdout, "the diff shows the rendered template"
    assert "changed=1" in dry.stdout
    assert not conf.exists() and (base / "stale.conf").exists(), "check mode wrote nothing"

    real = _playbook(tmp_path)
    assert real.returncode == 0, real.stdout + real.stderr
    assert conf.read_text() == "hello world\n" and _mode(conf) == 0o640
    assert not (base / "stale.conf").exists()
    paths = [str(base / "conf.d"), str(conf), str(base / "stale.conf")]
    assert f'CHANGED_PATHS={",".join(paths)}"' in real.stdout

    again = _playbook(tmp_path)
    assert again.returncode == 0 and "changed=0" in again.stdout
    assert 'CHANGED_PATHS="' in again.stdout


def test_the_action_refuses_an_item_without_a_mode_before_touching_anything(tmp_path: Path) -> None:
    base = tmp_path / "target"
    base.mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "app.conf.j2").write_text("x\n")
    play = PLAYBOOK.format(base=base, owner=OWNER, group=GROUP).replace(" mode: '0640',", "")
    (tmp_path / "play.yml").write_text(play)

    result = _playbook(tmp_path)

    assert result.returncode != 0
    assert f"{base}/conf.d/app.conf: give the mode" in result.stdout
    assert not (base / "conf.d").exists(), "nothing was written: the request is checked first"
