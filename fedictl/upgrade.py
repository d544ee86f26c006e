"""Upgrading an app: the target version's checks, and moving the inventory's pin afterwards.

The upgrade itself runs on the servers (playbooks/upgrade.yml: the app role's upgrade path with its
backup, health gate and rollback). What happens here is what can be decided before any host is
contacted: is the target a release tag, is it newer than the pin, is the app enabled; and, after a
successful run, writing the new pin into the inventory so the next `fedictl deploy` agrees with
what the servers run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedictl import apps, paths, releases, yamlio
from fedictl.apps import get as registered
from fedictl.errors import FedictlError, UsageError, shown

VERSION_RE = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


def upgradable() -> tuple[str, ...]:
    """The apps whose upgrade path fedictl knows (their roles' upgrade tasks)."""
    return tuple(app.name for app in apps.registered() if app.upgradable)


def check_app(app: str) -> None:
    """UsageError unless ``app`` is an app fedictl knows how to upgrade."""
    if app not in apps.names():
        raise UsageError(
            f"APP {app!r}: no app of that name; fix: name one of {', '.join(apps.names())} "
            f"(fedictl upgrades {', '.join(upgradable())} so far)"
        )
    if app not in upgradable():
        raise UsageError(
            f"{app}: fedictl upgrades only {', '.join(upgradable())} so far; fix: upgrade {app} by "
            f"changing fedictl_apps.{app}.version and running `fedictl deploy`"
        )


def parse_version(text: str, what: str = "--to") -> tuple[int, int, int]:
    match = VERSION_RE.fullmatch(text)
    if match is None:
        raise UsageError(
            f"{what} {text!r} is not a release tag; fix: write it as upstream tags releases, "
            "v<major>.<minor>.<patch> (for example v4.6.5)"
        )
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Plan:
    app: str
    current: str  # the inventory's pin
    target: str
    release_archive: str | None = None
    release_archive_checksum: str | None = None

    def checksum(self) -> tuple[str, str]:
        """The app's checksum setting and the value it takes (its registry says which form)."""
        declared = registered(self.app)
        value = self.release_archive_checksum or ""
        if not declared.checksum_prefixed:
            value = value.removeprefix("sha256:")
        return declared.checksum_setting, value

    def extra_vars(self) -> dict[str, str]:
        """What the upgrade playbook gets as extra vars (highest precedence); fedictl_upgrade_app
        chooses the app's play in playbooks/upgrade.yml."""
        out = {"fedictl_upgrade_app": self.app, f"{self.app}_version": self.target}
        if self.release_archive is not None:
            out[f"{self.app}_release_archive"] = self.release_archive
            setting, value = self.checksum()
            out[f"{self.app}_{setting}"] = value
        return out


def plan(
    app: str,
    target: str,
    apps: dict[str, Any],
    release_archive: Path | None = None,
    release_archive_checksum: str | None = None,
    unknown_line: bool = False,
) -> Plan:
    """Check the request against the inventory's fedictl_apps; raise UsageError naming the fix.

    A target on a release line the app's registry does not know is refused (fedictl cannot check
    that line's requirements and notes) unless ``unknown_line`` says the user read them.
    """
    check_app(app)
    settings = apps.get(app)
    if not isinstance(settings, dict) or settings.get("enabled") is not True:
        raise UsageError(f"{app} is not enabled in the inventory; fix: deploy it first")
    wanted = parse_version(target)
    current = str(settings.get("version", ""))
    if wanted < parse_version(current, f"fedictl_apps.{app}.version"):
        raise UsageError(
            f"--to {target} is older than the pinned {current}: {app} cannot go back a release "
            "once its migrations have run; fix: give a newer version, or restore a backup"
        )
    # `apps` here is the inventory's fedictl_apps; the registry's declaration is registered(app).
    lines = registered(app).lines
    if lines:
        releases.check_target(app, lines, target, unknown_line)
    if release_archive is not None:
        if not paths.is_file(release_archive):
            raise UsageError(
                f"--release-archive {shown(release_archive)}: no such file; fix: give the path "
                "of the archive on this machine"
            )
        text = str(release_archive.resolve())
        if "{" in text or "}" in text or yamlio.control_character(text):
            raise UsageError(
                f"--release-archive {text!r}: a path Ansible would read as a template (it holds "
                "'{' or a control character); fix: move or link the archive to a plain path"
            )
        if release_archive_checksum and not SHA256_RE.fullmatch(release_archive_checksum):
            raise UsageError(
                f"--release-checksum {release_archive_checksum!r}: "
                "fix: write sha256:<64 hex digits>"
            )
    return Plan(
        app,
        current,
        target,
        str(release_archive.resolve()) if release_archive is not None else None,
        release_archive_checksum,
    )


def pin(main_vars: Path, done: Plan) -> bool:
    """Write the new version (and archive, when one was given) into group_vars/all/main.yml.

    A line edit inside ``fedictl_apps.<app>`` keeps the file's comments and layout; the result is
    read back to prove it. Returns False when the pin already said so.
    """
    text = main_vars.read_text()
    lines = text.splitlines(keepends=True)
    updates = {"version": done.target}
    if done.release_archive is not None:
        updates["release_archive"] = done.release_archive
        setting, value = done.checksum()
        updates[setting] = value
    start = _block(lines, ["fedictl_apps:", f"  {done.app}:"])
    for key, value in updates.items():
        lines = _set(lines, start, key, value)
    new = "".join(lines)
    data = yamlio.load(new, str(main_vars))
    got = data["fedictl_apps"][done.app]
    if any(str(got.get(k)) != v for k, v in updates.items()):
        raise FedictlError(f"{main_vars}: could not write fedictl_apps.{done.app}; edit it by hand")
    if new == text:
        return False
    main_vars.write_text(new)
    return True


def _block(lines: list[str], path: list[str]) -> int:
    """Index of the line after the nested mapping headers in ``path``."""
    index = 0
    for header in path:
        for i in range(index, len(lines)):
            if lines[i].rstrip() == header:
                index = i + 1
                break
        else:
            raise FedictlError(f"no `{header.strip()}` block found; edit the version by hand")
    return index


def _set(lines: list[str], start: int, key: str, value: str) -> list[str]:
    """Set ``    key: value`` in the 4-space-indented block starting at ``start``."""
    rendered = f"    {key}: {yamlio.dump_scalar(value)}\n"
    end = start
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        if re.match(rf"    {re.escape(key)}:", lines[end]):
            return [*lines[:end], rendered, *lines[end + 1 :]]
        end += 1
    return [*lines[:end], rendered, *lines[end:]]


def listing(app: str, fedictl_apps: dict[str, Any]) -> dict[str, object]:
    """What `fedictl upgrade APP --list` shows: the pinned (installed) version, the newest known
    patch of its line and the next line, with their requirements (fedictl/releases.py)."""
    check_app(app)
    settings = fedictl_apps.get(app)
    if not isinstance(settings, dict) or settings.get("enabled") is not True:
        raise UsageError(f"{app} is not enabled in the inventory; fix: deploy it first")
    installed = str(settings.get("version", ""))
    parse_version(installed, f"fedictl_apps.{app}.version")
    return releases.plan_lines(app, apps.get(app).lines, installed)


def listing_lines(shown_list: dict[str, Any]) -> list[str]:
    """The listing as text for people."""
    app, installed = shown_list["app"], shown_list["installed"]
    out = [f"{app} {installed} (pinned): {shown_list['status']}: {shown_list['message']}"]
    for label, key in (("its line", "line"), ("next line", "next_line")):
        line = shown_list[key]
        if line is None:
            out.append(f"  {label}: none known")
            continue
        needs = ", ".join(f"{k} {v}" for k, v in line["requirements"].items())
        out.append(f"  {label} {line['line']}: newest {line['newest']}; needs {needs}")
        if line["note"]:
            out.append(f"    upstream's notes: {line['note']}")
        if line["newest"] != installed:
            out.append(f"    fedictl upgrade {app} --to {line['newest']} -i INVENTORY")
    return out
