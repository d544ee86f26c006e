"""Every role keeps the house conventions: specs and defaults agree, main.yml only dispatches,
no hidden dependencies, templates carry the managed header."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
COMMENTABLE = {".conf", ".cfg", ".ini", ".service", ".timer", ".socket", ".yml", ".yaml", ".sh",
               ".local", ".rules", ""}  # fmt: skip


def _load(path: Path) -> object:
    return yaml.safe_load(path.read_text()) if path.exists() else None


@pytest.fixture(params=ROLES, ids=[r.name for r in ROLES])
def role(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_are_roles() -> None:
    assert ROLES, "no roles found"


def test_spec_and_defaults_list_the_same_options(role: Path) -> None:
    spec = _load(role / "meta" / "argument_specs.yml")
    assert isinstance(spec, dict), f"{role.name}: meta/argument_specs.yml missing"
    options = spec["argument_specs"]["main"]["options"]
    defaults = _load(role / "defaults" / "main.yml") or {}
    assert isinstance(defaults, dict)
    in_spec_not_defaults = {
        k for k, v in options.items() if not v.get("required") and k not in defaults
    }
    assert set(defaults) - set(options) == set(), "defaults without a spec entry"
    assert in_spec_not_defaults == set(), "optional spec entries without a default"


def test_every_option_is_prefixed_typed_and_described(role: Path) -> None:
    options = _load(role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]  # type: ignore[index]
    for name, opt in options.items():
        assert name.startswith(f"{role.name}_"), f"{name}: not prefixed {role.name}_"
        assert opt.get("type"), f"{name}: no type"
        assert opt.get("description"), f"{name}: no description"


def test_no_role_dependencies(role: Path) -> None:
    meta = _load(role / "meta" / "main.yml")
    assert isinstance(meta, dict)
    assert meta.get("dependencies") == [], "roles are composed in playbooks, not by dependencies"


def test_main_only_dispatches(role: Path) -> None:
    tasks = _load(role / "tasks" / "main.yml")
    assert isinstance(tasks, list)
    for task in tasks:
        modules = {k for k in task if "." in k}
        assert modules <= {"ansible.builtin.include_tasks", "ansible.builtin.import_tasks"}, task


def test_templates_start_with_the_managed_header(role: Path) -> None:
    for tpl in (role / "templates").rglob("*.j2"):
        target_suffix = Path(tpl.stem).suffix
        if target_suffix not in COMMENTABLE:
            continue
        lines = tpl.read_text().lstrip().splitlines()
        head = lines[1] if lines[0].startswith("#!") else lines[0]  # after a shebang
        assert "ansible_managed" in head, f"{tpl.relative_to(ROOT)}: no managed header"


def test_role_has_a_readme(role: Path) -> None:
    assert (role / "README.md").exists()
