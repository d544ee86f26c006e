"""Which releases of an app fedictl knows, and which of them are unsafe.

Each app's registry module declares its supported release lines (``Line``): the requirements of the
line and its known releases, each with the security advisories it fixes. The data ships with
fedictl and is updated with each fedictl release; nothing is fetched at run time. From it:

- ``verdict``: is a running version safe? WARN when a later known patch of its line fixes an
  advisory, CRIT when one of those advisories is critical, naming the release to move to;
- ``plan_lines``: for ``fedictl upgrade APP --list``, the installed version, the newest known patch
  of its line and the next line, with their requirements;
- ``check_target``: an upgrade to a release on a line fedictl does not know is refused, unless the
  user says they have read upstream's notes themselves.

Imports no click.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fedictl.errors import UsageError

SEVERITIES = ("low", "medium", "high", "critical")
_VERSION = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


@dataclass(frozen=True)
class Advisory:
    """A security advisory upstream published (GHSA id), and how severe upstream rated it."""

    id: str
    severity: str  # one of SEVERITIES
    url: str = ""

    @property
    def link(self) -> str:
        return self.url or f"https://github.com/advisories/{self.id}"


@dataclass(frozen=True)
class Release:
    """One release tag of a line; ``fixes`` are the advisories fixed first in this release."""

    version: str  # v4.7.6
    date: str  # YYYY-MM-DD as upstream published it (approximate where upstream's notes are)
    fixes: tuple[Advisory, ...] = ()
    note: str = ""  # what an operator must know, in one line
    commit: str = ""  # the tag's commit, where it was verified


@dataclass(frozen=True)
class Line:
    """A release line (4.7): its requirements and its known releases, oldest first."""

    name: str
    requirements: Mapping[str, str]  # component -> the range upstream asks for, e.g. "≥ 22"
    releases: tuple[Release, ...]
    upgrade_note: str = ""  # what the notes of the line's first release ask when moving to it

    @property
    def newest(self) -> Release:
        return self.releases[-1]


@dataclass(frozen=True)
class Verdict:
    """A running version against the known releases: OK, WARN or CRIT, and what to do."""

    level: str  # OK, WARN, CRIT, UNKNOWN
    message: str
    target: str = ""  # the release to move to ('' when none)
    advisories: tuple[Advisory, ...] = field(default_factory=tuple)


def version_key(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of v4.7.6 or 4.7.6; ValueError for anything else."""
    match = _VERSION.fullmatch(version.strip())
    if match is None:
        raise ValueError(f"{version!r} is not a release version")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def line_name(version: str) -> str:
    major, minor, _ = version_key(version)
    return f"{major}.{minor}"


def find_line(lines: Sequence[Line], version: str) -> Line | None:
    name = line_name(version)
    return next((line for line in lines if line.name == name), None)


def later_on_line(line: Line, version: str) -> list[Release]:
    """The known releases of ``line`` after ``version``, oldest first."""
    current = version_key(version)
    return [r for r in line.releases if version_key(r.version) > current]


def verdict(app: str, lines: Sequence[Line], version: str) -> Verdict:
    """Whether ``version`` (what an instance reports) has known unfixed advisories on its line."""
    try:
        line = find_line(lines, version)
    except ValueError:
        return Verdict("UNKNOWN", f"{version!r} is not a release version fedictl can compare")
    if line is None:
        known = ", ".join(line.name for line in lines) or "none"
        return Verdict(
            "WARN",
            f"{app} {version} is on a release line fedictl does not know (known: {known}); "
            "read upstream's release notes for its security fixes",
        )
    later = later_on_line(line, version)
    fixed = tuple(advisory for release in later for advisory in release.fixes)
    if not fixed:
        newest = f"; {line.newest.version} is newer" if later else ""
        return Verdict("OK", f"{app} {version}: no known advisory on the {line.name} line{newest}")
    target = line.newest.version
    critical = [a for a in fixed if a.severity == "critical"]
    ids = ", ".join(a.id for a in fixed)
    return Verdict(
        "CRIT" if critical else "WARN",
        f"{app} {version} is affected by {len(fixed)} advisor{'y' if len(fixed) == 1 else 'ies'} "
        f"fixed in later {line.name} releases ({ids}"
        f"{'; critical: ' + ', '.join(a.id for a in critical) if critical else ''}); "
        f"move to {target}",
        target,
        fixed,
    )


def next_line(lines: Sequence[Line], version: str) -> Line | None:
    """The first known line after ``version``'s own."""
    major, minor, _ = version_key(version)
    later = [line for line in lines if tuple(int(p) for p in line.name.split(".")) > (major, minor)]
    return min(later, key=lambda line: tuple(int(p) for p in line.name.split(".")), default=None)


def plan_lines(app: str, lines: Sequence[Line], installed: str) -> dict[str, object]:
    """What ``fedictl upgrade APP --list`` shows: installed, its line's newest, the next line."""
    own = find_line(lines, installed)
    nxt = next_line(lines, installed)

    def describe(line: Line | None) -> dict[str, object] | None:
        if line is None:
            return None
        return {
            "line": line.name,
            "newest": line.newest.version,
            "requirements": dict(line.requirements),
            "note": line.upgrade_note,
        }

    found = verdict(app, lines, installed)
    return {
        "app": app,
        "installed": installed,
        "status": found.level,
        "message": found.message,
        "line": describe(own),
        "next_line": describe(nxt),
    }


def check_target(app: str, lines: Sequence[Line], target: str, override: bool) -> Line | None:
    """The known line of ``target``; UsageError when fedictl does not know it (unless override)."""
    line = find_line(lines, target)
    if line is None and not override:
        known = ", ".join(f"{line.name} (newest {line.newest.version})" for line in lines)
        raise UsageError(
            f"--to {target}: fedictl does not know {app}'s {line_name(target)} line, so it cannot "
            f"check that line's requirements and upgrade notes (it knows {known}); fix: upgrade "
            "to a known release, or read upstream's notes for that line yourself and add "
            "--unknown-line to go ahead"
        )
    return line


def validate_lines(app: str, lines: Sequence[Line]) -> list[str]:
    """Problems in an app's declared lines (the registry refuses such a declaration)."""
    problems = []
    for line in lines:
        if not line.releases:
            problems.append(f"{app} {line.name}: a line needs at least one known release")
        for release in line.releases:
            try:
                if line_name(release.version) != line.name:
                    problems.append(f"{app} {release.version} is not on the {line.name} line")
            except ValueError as exc:
                problems.append(f"{app} {line.name}: {exc}")
            problems += [
                f"{app} {release.version}: severity {a.severity!r} of {a.id} is none of "
                f"{', '.join(SEVERITIES)}"
                for a in release.fixes
                if a.severity not in SEVERITIES
            ]
        keys = [version_key(r.version) for r in line.releases if _VERSION.fullmatch(r.version)]
        if keys != sorted(keys):
            problems.append(f"{app} {line.name}: list the releases oldest first")
    return problems
