"""Run ansible-playbook for a deployment and read the per-host summary it leaves behind.

ansible-playbook runs as an argv list from the project root (so its ansible.cfg applies), with
its output going straight to the user's terminal. The summary comes from the
``fedictl_summary`` callback plugin (``plugins/callback/``), which writes JSON at the end of the
run; fedictl never parses Ansible's text output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedictl import paths
from fedictl.errors import MissingToolError, UsageError
from fedictl.inventory import HOSTS

CALLBACK_DIR = paths.PROJECT_ROOT / "plugins" / "callback"
CALLBACK = "fedictl_summary"
SUMMARY_ENV = "FEDICTL_SUMMARY_FILE"
COUNTS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")


@dataclass
class Deployment:
    inventory: Path  # the inventory directory
    vault_password_file: Path
    app: str | None = None
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: str | None = None
    extra: list[str] = field(default_factory=list)  # passed through after `--`
    playbook_name: str | None = None  # another playbook than the app's or site.yml

    @property
    def playbook(self) -> str:
        if self.playbook_name:
            return self.playbook_name
        return f"playbooks/{self.app}.yml" if self.app else "playbooks/site.yml"

    def argv(self) -> list[str]:
        argv = [
            "ansible-playbook",
            "-i",
            str((self.inventory / HOSTS).resolve()),
            "--vault-password-file",
            str(self.vault_password_file.resolve()),
        ]
        if self.check:
            argv.append("--check")
        if self.diff:
            argv.append("--diff")
        if self.limit:
            argv += ["--limit", self.limit]
        if self.tags:
            argv += ["--tags", self.tags]
        return [*argv, *self.extra, self.playbook]


@dataclass
class Result:
    exit_code: int
    summary: dict[str, dict[str, Any]] | None  # host -> counts; None if no play ran


# ansible-core imports cryptography's DSA at every start, which warns that DSA is deprecated: noise
# for whoever runs fedictl (nothing fedictl or the servers use is DSA). Filtered by message, so no
# module has to be importable when Python starts.
QUIET_WARNINGS = "ignore:DSA is deprecated"


def environment(summary_file: Path) -> dict[str, str]:
    """The process environment plus what enables the summary callback, without the DSA warning."""
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = ",".join(
        x for x in (env.get("PYTHONWARNINGS", ""), QUIET_WARNINGS) if x
    )
    plugin_dirs = [str(CALLBACK_DIR)]
    if env.get("ANSIBLE_CALLBACK_PLUGINS"):
        plugin_dirs.append(env["ANSIBLE_CALLBACK_PLUGINS"])
    enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    env["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(plugin_dirs)
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join([*enabled, CALLBACK])
    env[SUMMARY_ENV] = str(summary_file)
    return env


def run(deployment: Deployment) -> Result:
    """Run ansible-playbook; its output is not captured. Returns its exit code and the summary."""
    if shutil.which("ansible-playbook") is None:
        raise MissingToolError(
            "ansible-playbook not found on PATH; fix: install fedictl's dependencies "
            "(pip install -e .) and activate that environment"
        )
    root = paths.project_root()
    if not (root / deployment.playbook).is_file():
        raise UsageError(
            f"{root / deployment.playbook} does not exist; fix: check --app, or FEDICTL_ROOT "
            "if this is not a fedictl checkout"
        )
    with tempfile.TemporaryDirectory(prefix="fedictl-deploy-") as tmp:
        summary_file = Path(tmp) / "summary.json"
        completed = subprocess.run(
            deployment.argv(), cwd=root, env=environment(summary_file), check=False
        )
        return Result(completed.returncode, read_summary(summary_file))


def read_summary(path: Path) -> dict[str, dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    return hosts if isinstance(hosts, dict) else None


def format_summary(result: Result) -> list[str]:
    """A one-screen table: one line per host, then failed task names."""
    if result.summary is None:
        return [
            f"No summary: ansible-playbook stopped before any play ran "
            f"(exit code {result.exit_code}); see its output above."
        ]
    if not result.summary:
        return [f"No host matched (exit code {result.exit_code})."]
    width = max(len(h) for h in result.summary)
    lines = ["Summary:", f"  {'host':<{width}}  " + "  ".join(f"{c:>11}" for c in COUNTS[:4])]
    for host, counts in sorted(result.summary.items()):
        cells = "  ".join(f"{counts.get(c, 0)!s:>11}" for c in COUNTS[:4])
        lines.append(f"  {host:<{width}}  {cells}")
    for host, counts in sorted(result.summary.items()):
        for task in counts.get("failed_tasks", [])[:5]:
            lines.append(f"  {host}: failed: {task}")
    verdict = "succeeded" if result.exit_code == 0 else f"failed (exit code {result.exit_code})"
    lines.append(f"Deployment {verdict}.")
    return lines
