"""Shared fixtures and helpers for the init/validate/secrets/deploy tests.

Imported explicitly by those test files (not a conftest) so that fixtures stay next to what
uses them. Every test gets its own project root (FEDICTL_ROOT) and config dir (XDG_CONFIG_HOME)
under tmp_path: nothing is written to the checkout or to the user's home.
"""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from fedictl import inventory, vault, yamlio
from fedictl.cli import cli

REPO = Path(__file__).resolve().parent.parent
ANSWERS_FILE = REPO / "examples" / "answers.yml"
EXAMPLE = REPO / "inventories" / "example"
EXAMPLE_PASSWORD = EXAMPLE / "TEST-ONLY-vault-password.txt"


@functools.cache
def _parsed_answers() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(ANSWERS_FILE.read_text())
    return data


def example_answers() -> dict[str, Any]:
    """A fresh copy of examples/answers.yml (parsed once)."""
    return copy.deepcopy(_parsed_answers())


@dataclass
class Project:
    root: Path
    config: Path
    runner: CliRunner

    def invoke(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    def inventory(self, name: str = "demo") -> Path:
        return self.root / "inventories" / name

    def password_file(self, name: str = "demo") -> Path:
        return inventory.default_password_file(name)

    def write_answers(self, answers: dict[str, Any], name: str = "answers.yml") -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(answers, sort_keys=False))
        return path

    def init(
        self, answers: dict[str, Any] | None = None, name: str = "demo", *extra: str
    ) -> Result:
        path = self.write_answers(answers if answers is not None else example_answers())
        return self.invoke("init", name, "--answers", str(path), *extra)

    def vault_data(self, name: str = "demo") -> dict[str, Any]:
        secret = vault.load_secret(self.password_file(name))
        return vault.read_vault(self.inventory(name) / inventory.VAULT, secret)

    def write_vault_data(self, data: dict[str, Any], name: str = "demo") -> None:
        secret = vault.load_secret(self.password_file(name))
        vault.write_vault(self.inventory(name) / inventory.VAULT, data, secret)

    def main_vars(self, name: str = "demo") -> dict[str, Any]:
        data: dict[str, Any] = yamlio.load_file(self.inventory(name) / inventory.MAIN)
        return data

    def write_main_vars(self, data: dict[str, Any], name: str = "demo") -> None:
        (self.inventory(name) / inventory.MAIN).write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(name="project")
def project_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    for playbook in ("site", "mastodon", "peertube", "pixelfed", "upgrade"):
        (root / "playbooks" / f"{playbook}.yml").write_text("[]\n")
    config = tmp_path / "config"
    monkeypatch.setenv("FEDICTL_ROOT", str(root))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv("FEDICTL_SMTP_PASSWORD", raising=False)
    monkeypatch.delenv("FEDICTL_S3_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    yield Project(root, config, CliRunner())


@pytest.fixture(name="demo")
def demo_fixture(project: Project) -> Project:
    """A project with inventories/demo written from examples/answers.yml."""
    result = project.init()
    assert result.exit_code == 0, result.output
    return project


def ansible_tool(name: str) -> str:
    """Path of an Ansible CLI from the environment running the tests."""
    import sys

    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def all_secret_values(project: Project, name: str = "demo") -> list[str]:
    values = [str(v) for v in project.vault_data(name).values() if v]
    values.append(project.password_file(name).read_text().strip())
    return values
