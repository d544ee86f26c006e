"""End to end on a real lab host: `fedictl init` → `validate` → `deploy --check`.

The organisation is described with the example answers, pointed at a fresh Debian 13 lab host;
the whole site.yml then runs in check mode against it. Check mode must be green on a fresh server
up to Mastodon, and must change nothing there. Mastodon comes from upstream (git, NodeSource,
rbenv), which lab hosts cannot reach: the run must stop there with a message saying so and how to
deploy from a release archive instead (the README's main job on this machine does the same).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _inventory_helpers import REPO, Project, all_secret_values, example_answers
from click.testing import CliRunner

from fedictl.lab import Host, Lab

CAN_BOOT = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng")
)
pytestmark = pytest.mark.skipif(not CAN_BOOT, reason="needs root and the lab's tools")
NAME = "pt-e2e"


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    lab = Lab()
    (booted,) = lab.up([NAME])
    try:
        yield booted
    finally:
        lab.down([NAME])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project root using this checkout's playbooks and roles, with its own inventories."""
    root = tmp_path / "project"
    root.mkdir()
    for item in ("playbooks", "roles", "plugins", "ansible.cfg"):
        (root / item).symlink_to(REPO / item)
    monkeypatch.setenv("FEDICTL_ROOT", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return Project(root, tmp_path / "config", CliRunner())


def test_init_validate_and_deploy_check_on_a_fresh_lab_host(
    host: Host, project: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    answers = example_answers()
    answers["servers"] = [
        {
            "name": host.name,
            "address": host.address,
            "user": host.user,
            "port": host.port,
            "identity_file": host.identity_file,
            "host_key_checking": False,
        }
    ]
    assert project.init(answers).exit_code == 0
    inv = str(project.inventory())

    validate = project.invoke("validate", "-i", inv)
    assert validate.exit_code == 0, validate.output

    summary_file = project.root / "summary.json"
    deploy = project.invoke("deploy", "-i", inv, "--check", "--summary-json", str(summary_file))
    ansible_output = capfd.readouterr().out
    assert summary_file.exists(), deploy.output + ansible_output[-3000:]
    summary = json.loads(summary_file.read_text())
    stats = summary["hosts"][host.name]
    # Everything up to Mastodon ran green; Mastodon stopped, saying why and what to do instead.
    assert deploy.exit_code == 2, deploy.output
    assert stats["failed_tasks"] == ["mastodon : Stop when upstream cannot be reached"], stats
    assert stats["failed"] == 1 and stats["unreachable"] == 0, stats
    assert stats["ok"] > 10
    assert "cannot reach" in ansible_output and "release archive" in ansible_output
    leaked = [
        v
        for v in all_secret_values(project)
        if v in deploy.output + validate.output + ansible_output
    ]
    assert not leaked, "a secret value appeared in the output"

    # Check mode changed nothing on the server: the firewall package is still not installed.
    probe = Lab().ssh_argv(host.name, ["dpkg-query", "-W", "-f=${Status}", "nftables"])
    status = subprocess.run(probe, capture_output=True, text=True).stdout
    assert "install ok installed" not in status
