"""fedictl/releases.py: which releases are unsafe, what an upgrade can move to, unknown lines.

The verdicts are computed from declared lines, so they are tested on lines made up here (values away
from any real app's) and, in tests/test_app_registry.py and the check tests, on the apps' own data.
"""

from __future__ import annotations

import pytest

from fedictl.errors import UsageError
from fedictl.releases import (
    Advisory,
    Line,
    Release,
    check_target,
    line_name,
    plan_lines,
    validate_lines,
    verdict,
    version_key,
)

HIGH = Advisory("GHSA-aaaa-bbbb-cccc", "high")
CRITICAL = Advisory("GHSA-dddd-eeee-ffff", "critical")
LINES = (
    Line(
        "2.8",
        {"node": "≥ 20"},
        (Release("v2.8.0", "2025-01-01"), Release("v2.8.3", "2025-03-01", (HIGH,))),
    ),
    Line(
        "2.9",
        {"node": "≥ 22", "postgresql": "≥ 14"},
        (
            Release("v2.9.0", "2025-06-01"),
            Release("v2.9.1", "2025-07-01", (HIGH,)),
            Release("v2.9.2", "2025-08-01"),
            Release("v2.9.4", "2025-09-01", (CRITICAL,)),
        ),
        upgrade_note="long migrations",
    ),
)


def test_versions_and_lines() -> None:
    assert version_key("v2.9.10") == (2, 9, 10) > version_key("2.9.9")
    assert line_name("v2.9.4") == "2.9"
    with pytest.raises(ValueError):
        version_key("v2.9")


@pytest.mark.parametrize(
    ("running", "level", "target"),
    [
        ("v2.9.4", "OK", ""),
        ("2.9.4", "OK", ""),  # as NodeInfo reports it, without the v
        ("v2.9.2", "CRIT", "v2.9.4"),  # the critical fix is later on its line
        ("v2.9.0", "CRIT", "v2.9.4"),
        ("v2.8.3", "OK", ""),  # newest of its line; the next line is no advisory of its own
        ("v2.8.1", "WARN", "v2.8.3"),
        ("v3.0.0", "WARN", ""),  # a line fedictl does not know
        ("nightly", "UNKNOWN", ""),
    ],
)
def test_the_verdict_of_a_running_version(running: str, level: str, target: str) -> None:
    found = verdict("app", LINES, running)
    assert (found.level, found.target) == (level, target), found.message


def test_the_verdict_names_the_advisories_and_the_release_to_move_to() -> None:
    found = verdict("app", LINES, "v2.9.0")
    assert [a.id for a in found.advisories] == [HIGH.id, CRITICAL.id]
    assert "critical: GHSA-dddd-eeee-ffff" in found.message and "move to v2.9.4" in found.message
    assert found.advisories[0].link == "https://github.com/advisories/GHSA-aaaa-bbbb-cccc"


def test_the_upgrade_list_shows_the_line_and_the_next() -> None:
    shown = plan_lines("app", LINES, "v2.8.1")
    assert shown["installed"] == "v2.8.1" and shown["status"] == "WARN"
    assert shown["line"] == {"line": "2.8", "newest": "v2.8.3", "requirements": {"node": "≥ 20"},
                             "note": ""}  # fmt: skip
    assert shown["next_line"] == {
        "line": "2.9", "newest": "v2.9.4",
        "requirements": {"node": "≥ 22", "postgresql": "≥ 14"}, "note": "long migrations",
    }  # fmt: skip
    assert plan_lines("app", LINES, "v2.9.4")["next_line"] is None


def test_an_unknown_line_is_refused_unless_overridden() -> None:
    assert check_target("app", LINES, "v2.9.9", override=False) is LINES[1]
    with pytest.raises(UsageError) as refused:
        check_target("app", LINES, "v3.0.1", override=False)
    assert "does not know app's 3.0 line" in str(refused.value)
    assert "2.9 (newest v2.9.4)" in str(refused.value) and "--unknown-line" in str(refused.value)
    assert check_target("app", LINES, "v3.0.1", override=True) is None


def test_bad_declarations_are_named() -> None:
    bad = (
        Line("1.0", {}, ()),
        Line("1.1", {}, (Release("v1.2.0", ""), Release("v1.1.0", "", (Advisory("X", "urgent"),)))),
    )
    problems = validate_lines("app", bad)
    assert "app 1.0: a line needs at least one known release" in problems
    assert "app v1.2.0 is not on the 1.1 line" in problems
    assert any("severity 'urgent' of X" in p for p in problems)
    assert "app 1.1: list the releases oldest first" in problems
    assert validate_lines("app", LINES) == []


def test_mastodons_lines_agree_with_the_roles_requirements() -> None:
    """The CLI (fedictl/apps/mastodon.py) and the role (__mastodon_requirements, which its
    preflight checks on the servers) know the same lines with the same requirements."""
    from pathlib import Path

    import yaml

    from fedictl import apps

    role = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "roles/mastodon/vars/main.yml").read_text()
    )["__mastodon_requirements"]
    lines = {line.name: line for line in apps.get("mastodon").lines}
    assert sorted(lines) == sorted(role)
    for name, needs in role.items():
        declared = lines[name].requirements
        assert declared["node"] == f">= {needs['node_major']}", name
        assert declared["postgresql"] == f">= {needs['postgresql'] // 10000}", name
        assert declared["redis"] == f">= {needs['redis']}", name
        low, high = (needs["ruby_min"].rsplit(".", 1)[0], needs["ruby_below"].rsplit(".", 1)[0])
        assert declared["ruby"] == f">= {low}, < {high}", name
    pin = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "roles/mastodon/defaults/main.yml").read_text()
    )["mastodon_version"]
    assert pin == apps.get("mastodon").settings().version == lines["4.7"].newest.version
