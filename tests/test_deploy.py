"""`fedictl deploy`: against a fake ansible-playbook first on PATH, and the real callback plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _inventory_helpers import (
    REPO,
    Project,
    all_secret_values,
    ansible_tool,
    demo_fixture,  # noqa: F401 - fixture
    project_fixture,  # noqa: F401 - fixture
)

from fedictl import runner

FAKE = """#!{python}
import json, os, sys
record = os.environ["FAKE_RECORD"]
with open(record, "w") as f:
    json.dump({{"argv": sys.argv, "cwd": os.getcwd(),
               "env": {{k: v for k, v in os.environ.items()
                       if k.startswith(("ANSIBLE_", "FEDICTL_"))}}}}, f)
summary = os.environ.get("FAKE_SUMMARY")
if summary:
    with open(os.environ["FEDICTL_SUMMARY_FILE"], "w") as f:
        f.write(summary)
print("PLAY RECAP (fake)")
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""

SUMMARY = {
    "version": 1,
    "hosts": {
        "lab1": {
            "ok": 12,
            "changed": 3,
            "failed": 1,
            "unreachable": 0,
            "skipped": 2,
            "rescued": 0,
            "ignored": 0,
            "failed_tasks": ["Start mastodon-web"],
        },
        "lab2": {
            "ok": 0,
            "changed": 0,
            "failed": 0,
            "unreachable": 1,
            "skipped": 0,
            "rescued": 0,
            "ignored": 0,
            "failed_tasks": ["Gathering Facts"],
        },
    },
}


@pytest.fixture
def fake(demo: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ansible-playbook first on PATH; returns the file it records its call to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ansible-playbook"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.delenv("FAKE_SUMMARY", raising=False)
    monkeypatch.delenv("FAKE_EXIT", raising=False)
    return record


def _recorded(record: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.read_text())
    return data


def _deploy(p: Project, *args: str) -> Any:
    return p.invoke("deploy", "-i", str(p.inventory()), *args)


def test_runs_site_yml_with_the_inventory_and_vault(demo: Project, fake: Path) -> None:
    result = _deploy(demo, "--check")
    assert result.exit_code == 0, result.output
    call = _recorded(fake)
    assert call["argv"][1:] == [
        "-i",
        str(demo.inventory() / "hosts.yml"),
        "--vault-password-file",
        str(demo.password_file()),
        "--check",
        "playbooks/site.yml",
    ]
    assert call["cwd"] == str(demo.root)
    env = call["env"]
    assert env["ANSIBLE_CALLBACKS_ENABLED"].split(",")[-1] == "fedictl_summary"
    assert env["ANSIBLE_CALLBACK_PLUGINS"].split(os.pathsep)[0] == str(REPO / "plugins/callback")
    assert env["FEDICTL_SUMMARY_FILE"].endswith("summary.json")


def test_every_option_reaches_ansible_playbook(demo: Project, fake: Path) -> None:
    result = _deploy(
        demo,
        "--app",
        "peertube",
        "--check",
        "--diff",
        "--limit",
        "lab1",
        "--tags",
        "configure",
        "--",
        "-vv",
        "--extra-vars",
        "x=1",
    )
    assert result.exit_code == 0, result.output
    assert _recorded(fake)["argv"][5:] == [
        "--check",
        "--diff",
        "--limit",
        "lab1",
        "--tags",
        "configure",
        "-vv",
        "--extra-vars",
        "x=1",
        "playbooks/peertube.yml",
    ]


@pytest.mark.parametrize("code", [0, 1, 2, 4, 99])
def test_exits_with_ansible_playbooks_code(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setenv("FAKE_EXIT", str(code))
    monkeypatch.setenv("FAKE_SUMMARY", json.dumps(SUMMARY))
    result = _deploy(demo)
    assert result.exit_code == code


def test_summary_comes_from_the_callback_json(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "2")
    monkeypatch.setenv("FAKE_SUMMARY", json.dumps(SUMMARY))
    result = _deploy(demo)
    lines = result.stdout.splitlines()
    assert lines[0] == "Summary:"
    assert lines[1].split() == ["host", "ok", "changed", "failed", "unreachable"]
    assert lines[2].split() == ["lab1", "12", "3", "1", "0"]
    assert lines[3].split() == ["lab2", "0", "0", "0", "1"]
    assert "lab1: failed: Start mastodon-web" in result.stdout
    assert lines[-1] == "Deployment failed (exit code 2)."


def test_without_a_summary_says_so(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "4")
    result = _deploy(demo)
    assert result.exit_code == 4
    assert "No summary: ansible-playbook stopped before any play ran (exit code 4)" in result.stdout


def test_print_command_runs_nothing(demo: Project, fake: Path) -> None:
    result = _deploy(demo, "--check", "--print-command", "--", "-v")
    assert result.exit_code == 0
    assert not fake.exists()
    assert result.stdout.strip() == (
        f"ansible-playbook -i {demo.inventory() / 'hosts.yml'} --vault-password-file "
        f"{demo.password_file()} --check -v playbooks/site.yml"
    )


def test_invalid_inventory_never_runs_ansible(demo: Project, fake: Path) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["mastodon"]["local_domain"] = "not a domain"
    demo.write_main_vars(main)
    for extra in ([], ["--print-command"]):
        result = _deploy(demo, *extra)
        assert result.exit_code == 2
        assert "no host was contacted" in result.stderr
        assert "fedictl_apps.mastodon.local_domain: found 'not a domain'" in result.stderr
        assert not fake.exists()


def test_wrong_vault_password_never_runs_ansible(demo: Project, fake: Path) -> None:
    wrong = demo.root / "wrong.pass"
    wrong.write_text("wrong\n")
    result = _deploy(demo, "--vault-password-file", str(wrong))
    assert result.exit_code == 2
    assert "vault.yml" in result.stderr
    assert not fake.exists()


def test_app_must_be_enabled(demo: Project, fake: Path) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["pixelfed"]["enabled"] = False
    demo.write_main_vars(main)
    result = _deploy(demo, "--app", "pixelfed")
    assert result.exit_code == 2
    assert "pixelfed is not enabled" in result.stderr
    assert not fake.exists()


def test_unknown_app_is_a_usage_error(demo: Project, fake: Path) -> None:
    result = _deploy(demo, "--app", "friendica")
    assert result.exit_code == 2
    assert not fake.exists()


def test_missing_ansible_playbook(
    demo: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = _deploy(demo)
    assert result.exit_code == 1
    assert "ansible-playbook not found on PATH" in result.stderr


def test_missing_playbook(demo: Project, fake: Path) -> None:
    (demo.root / "playbooks" / "site.yml").unlink()
    result = _deploy(demo)
    assert result.exit_code == 2
    assert "playbooks/site.yml does not exist" in result.stderr
    assert not fake.exists()


def test_no_secret_in_deploy_output(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SUMMARY", json.dumps(SUMMARY))
    outputs = [_deploy(demo).output, _deploy(demo, "--print-command").output]
    for value in all_secret_values(demo):
        for output in outputs:
            assert value not in output


def test_callback_plugin_writes_per_host_json(tmp_path: Path) -> None:
    """The real plugin under a real ansible-playbook run on localhost."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        "- name: Callback check\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Something that changes\n"
        "      ansible.builtin.command: 'true'\n"
        "    - name: Something that is fine\n"
        "      ansible.builtin.debug:\n"
        "        msg: ok\n"
        "    - name: Something skipped\n"
        "      ansible.builtin.debug:\n"
        "        msg: never\n"
        "      when: false\n"
        "    - name: Something that fails\n"
        "      ansible.builtin.fail:\n"
        "        msg: on purpose\n"
    )
    summary = tmp_path / "summary.json"
    env = runner.environment(summary)
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    completed = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 2, completed.stdout + completed.stderr
    data = json.loads(summary.read_text())
    assert data["hosts"]["localhost"] == {
        "ok": 2,
        "changed": 1,
        "failed": 1,
        "unreachable": 0,
        "skipped": 1,
        "rescued": 0,
        "ignored": 0,
        "failed_tasks": ["Something that fails"],
    }
    assert runner.read_summary(summary) == data["hosts"]


def test_ansible_starts_without_the_dsa_deprecation_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ansible-playbook, started with the environment fedictl gives it: no 'DSA is
    deprecated' line (cryptography's warning at every start), which it prints without."""
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)  # scripts/test sets the same filter
    argv = [str(Path(sys.executable).with_name("ansible-playbook")), "--version"]
    bare = subprocess.run(argv, capture_output=True, text=True, check=False)
    ours = subprocess.run(
        argv, capture_output=True, text=True, check=False,
        env=runner.environment(tmp_path / "summary.json"),
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    if "DSA is deprecated" not in bare.stderr:
        pytest.skip("this cryptography does not warn about DSA")
    assert "DSA is deprecated" not in ours.stderr + ours.stdout
