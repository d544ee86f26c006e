"""Property: any inventory or answers, however mangled, is either valid or rejected with
messages that name a file and a key — never a traceback, never a secret value.

The 1000-example properties run the same checks `validate` and `init` run, on in-memory data
(the inventory as Ansible hands it over); a smaller property drives the real CLI on files.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from _inventory_helpers import example_answers
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedictl import inventory, model, secrets, yamlio
from fedictl.cli import cli
from fedictl.errors import ValidationError
from fedictl.inventory import Inventory
from fedictl.validate import check

INTERESTING: list[Any] = [
    None,
    "",
    " ",
    True,
    False,
    0,
    1,
    -1,
    15,
    16,
    22,
    443,
    3000,
    4000,
    9000,
    65536,
    1.5,
    "social.example.test",
    "video.example.test",
    "Social.Example",
    "a@b.test",
    "nope",
    "v4.6.5",
    "main",
    "https://acme.example.test/dir",
    "sftp:u@h:/r",
    "mastodon",
    "lab1",
    "x" * 300,
    "ünïcode.test",
    "base64:",
    [],
    {},
    ["a"],
    {"enabled": True},
]
scalars = st.one_of(
    st.sampled_from(INTERESTING), st.integers(), st.text(max_size=30), st.floats(allow_nan=True)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(data: st.DataObject, tree: dict[str, Any], rounds: int) -> None:
    for _ in range(rounds):
        paths = _paths(tree)
        if not paths:
            return
        path = data.draw(st.sampled_from(paths))
        parent: Any = tree
        for part in path[:-1]:
            parent = parent[part]
        op = data.draw(st.sampled_from(["replace", "delete", "sibling"]))
        # Copies: INTERESTING holds mutable values that later rounds may mutate in place.
        if op == "replace":
            parent[path[-1]] = copy.deepcopy(data.draw(values))
        elif op == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=10))] = copy.deepcopy(data.draw(values))


ORG = model.from_answers(example_answers())
VAULT = {**ORG.provided_secrets(), **secrets.ensure({}, set(model.APPS))}
SECRET_VALUES = [v for v in VAULT.values() if len(v) >= 16]


def _base() -> Inventory:
    return inventory.from_model(Path("inventories/prop"), ORG, copy.deepcopy(VAULT))


def _assert_well_formed(problems: list[Any]) -> None:
    for problem in problems:
        text = str(problem)
        assert problem.file and problem.key and problem.fix, text
        assert text.startswith(f"{problem.file}: {problem.key}: found "), text
        for secret in SECRET_VALUES:
            assert secret not in text


def test_unmutated_model_is_valid() -> None:
    assert check(_base()) == []


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), rounds=st.integers(min_value=1, max_value=4))
def test_mutated_inventories_are_valid_or_named(data: st.DataObject, rounds: int) -> None:
    inv = _base()
    host_vars = inv.hostvars["lab1"]
    _mutate(data, host_vars, rounds)
    if data.draw(st.booleans()):
        group = data.draw(st.sampled_from(sorted(inv.groups)))
        inv.groups[group] = data.draw(
            st.lists(st.sampled_from(["lab1", "ghost", "x y"]), max_size=2, unique=True)
        )
        for ghost in inv.groups[group]:
            inv.hostvars.setdefault(ghost, copy.deepcopy(host_vars))
            inv.groups["fediverse"] = sorted(set(inv.groups["fediverse"]) | {ghost})
    problems = check(inv)
    _assert_well_formed(problems)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), rounds=st.integers(min_value=0, max_value=4))
def test_mutated_answers_are_accepted_or_named(data: st.DataObject, rounds: int) -> None:
    """The path init takes: answers → model → secrets → the same check as validate."""
    answers = example_answers()
    _mutate(data, answers, rounds)
    try:
        org = model.from_answers(answers, "answers.yml")
    except ValidationError as exc:
        assert exc.problems
        for line in exc.problems:
            key = line.removeprefix("answers.yml: ").split(": found ", 1)[0]
            assert line.startswith("answers.yml: ") and key and "; fix: " in line, line
        return
    vault = {**VAULT, **org.provided_secrets()}  # as init would generate (made once: faster)
    _assert_well_formed(check(inventory.from_model(Path("inventories/prop"), org, vault)))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_cli_on_mangled_files_exits_0_or_2(data: st.DataObject, tmp_path_factory: Any) -> None:
    """Real files, real loader: validate exits 0 or 2 with named problems, never a traceback."""
    from fedictl import vault as vault_module

    root = tmp_path_factory.mktemp("prop")
    password = root / "pass"
    password.write_text("property-test-password\n")
    inv = _base()
    target = root / "inv"
    inventory.write(target, ORG, copy.deepcopy(VAULT), vault_module.load_secret(password))
    main_file = target / inventory.MAIN
    main = yamlio.load_file(main_file)
    _mutate(data, main, data.draw(st.integers(min_value=1, max_value=3)))
    main_file.write_text(yaml.safe_dump(main))
    if data.draw(st.booleans()):
        hosts_file = target / inventory.HOSTS
        hosts = yamlio.load_file(hosts_file)
        _mutate(data, hosts, 1)
        hosts_file.write_text(yaml.safe_dump(hosts))
    result = CliRunner().invoke(
        cli, ["validate", "-i", str(target), "--vault-password-file", str(password)]
    )
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 2:
        # Ansible's own "[WARNING]: ..." lines (possibly several lines each) aside:
        ours = [
            x.removeprefix("Error: ")
            for x in result.stderr.splitlines()
            if x.removeprefix("Error: ").startswith(f"{target}/")
        ]
        assert ours, result.stderr
        for line in ours:
            assert ": found " in line and "; fix: " in line, line
    for secret in SECRET_VALUES:
        assert secret not in result.output
    del inv
