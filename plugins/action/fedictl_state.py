"""fedictl_state: read what a role manages on a host in one remote call, and say what differs.

A role declares the state it manages; this action probes the host once (plugins/host/
fedictl_probe.py through python3, no module start-up), compares in Python and returns a verdict per
part and one `differs`. The role's tasks then run only for the parts that differ, and nothing after
the probe runs when nothing does. See docs/roles.md.

Options (each optional; files and lines items with `enabled: false` are left out, so a role can
declare every item with the condition that applies it):
  files:    [{path, state: file|directory|absent|link, src: template | content: text, target (link),
              mode, owner (root), group (root), vars: template variables, ...}] — the items
              fedictl_sync_files writes; a file item with neither src nor content is checked
              for owner, group and mode only; a link for its target. Extra keys (batch,
              reload...) are kept in the returned items.
  lines:    [{path, regexp, line, ...}] — as fedictl_sync_files' state lines (ansible.builtin.
              lineinfile with regexp): the last line the regexp matches must be the line.
  packages: [name, ...] — must be installed (dpkg).
  units:    [name | {name, enabled: true|false|null, active: true|false|null}] — true: must be,
              false: must not be, null: either; a bare name means enabled and active.
  commands: {name: {argv: [...] | sh: text, expect: {rc, lines, stdout_lines, stdout}}} — read-only
              commands; with expect, a mismatch is a difference (rc defaults to 0; lines must all be
              among the output's lines; stdout_lines and stdout must be equal). Without expect the
              output is only reported. Each answer carries ok (the output as expected: always the
              live verdict) and differs (not ok, or the gates open).
  paths:    [path or glob, ...] — further paths to describe (reported in `found`, no verdict).
Returns: differs; files_pending, lines_pending (fedictl_sync_files items, lines grouped per file),
  packages_missing, units_pending (the unit declarations not met), units {name: {enabled, active,
  unit_file_state, active_state}}, commands {name: {rc, stdout, stdout_lines, stderr, ok,
  differs}}, found {path: description}, parts {files, lines, packages, units, commands: bool};
  gates_open.
With the variable fedictl_gates_open true, every declared part counts as differing (each task then
checks its own part): a scenario's idempotence run with the gates open shows a task the declarations
forgot as a change.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader

HOST_SCRIPTS = Path(__file__).resolve().parent.parent / "host"
OPTIONS = ("files", "lines", "packages", "units", "commands", "paths")
FILE_STATES = ("file", "directory", "absent", "link")
UNIT_PROPERTIES = "Id,UnitFileState,ActiveState"


def run_host_script(action: ActionBase, script: str, request: Mapping[str, Any]) -> Any:
    """Run plugins/host/SCRIPT with python3 on the task's host, the request as JSON on stdin."""
    source = (HOST_SCRIPTS / script).read_text()
    answer = action._low_level_execute_command(
        f"/usr/bin/python3 -c {shlex.quote(source)}",
        in_data=json.dumps(request).encode(),
        sudoable=True,
    )
    try:
        return json.loads(answer["stdout"])
    except ValueError:
        detail = (answer["stderr"] or answer["stdout"]).strip()[-2000:]
        raise AnsibleActionFail(
            f"{script}: failed on the host (rc {answer['rc']}): {detail}"
        ) from None


def render(action: ActionBase, item: Mapping[str, Any], task_vars: dict[str, Any]) -> str | None:
    """An item's content as fedictl_sync_files writes it: its template (src) rendered here as the
    template lookup does, with the item's vars, or its content; None when it has neither."""
    if "src" in item:
        template = lookup_loader.get(
            "ansible.builtin.template", loader=action._loader, templar=action._templar
        )
        return str(
            template.run([item["src"]], variables=task_vars, template_vars=item.get("vars", {}))[0]
        )
    if "content" in item:
        return str(item["content"])
    return None


# ---- parsers of the probe's answers (one each, shared by every role) --------------------------


def unit_id(name: str) -> str:
    """systemctl show reports Id with the unit's type: a bare name is a service."""
    return name if "." in name else f"{name}.service"


def parse_units(stdout: str) -> dict[str, dict[str, str]]:
    """`systemctl show --property=Id,UnitFileState,ActiveState -- UNITS...`: blocks by Id."""
    units: dict[str, dict[str, str]] = {}
    for block in stdout.split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def parse_installed(stdout_lines: Iterable[str]) -> set[str]:
    """`dpkg-query --show --showformat='${Package} ${db:Status-Status}\\n'`: the installed ones."""
    installed = set()
    for line in stdout_lines:
        name, _, status = line.partition(" ")
        if status.strip() == "installed":
            installed.add(name.split(":", 1)[0])
    return installed


def lines_match(text: str | None, regexp: str, line: str) -> bool:
    """What fedictl_write's state lines would leave unchanged: the last matching line is `line`."""
    if text is None:
        return False
    pattern = re.compile(regexp)
    matches = [have for have in text.splitlines() if pattern.search(have)]
    return bool(matches) and matches[-1] == line


def attributes_match(want: Mapping[str, Any], have: Mapping[str, Any]) -> bool:
    return bool(
        have.get("pw_name") == want.get("owner", "root")
        and have.get("gr_name") == want.get("group", "root")
        and have.get("mode") == str(want.get("mode"))
    )


def file_matches(
    want: Mapping[str, Any], have: Mapping[str, Any] | None, checksum: str | None
) -> bool:
    """Whether the live path (the probe's description, None when absent) is as declared."""
    state = want.get("state", "file")
    if state == "absent":
        return have is None
    if state == "link":
        return have is not None and bool(have["islnk"]) and have.get("lnk_target") == want["target"]
    if have is None or not attributes_match(want, have):
        return False
    if state == "directory":
        return bool(have["isdir"])
    return bool(have["isreg"]) and (checksum is None or have.get("checksum") == checksum)


def unit_ok(want: Mapping[str, Any], unit: Mapping[str, Any]) -> bool:
    for key in ("enabled", "active"):
        if want.get(key) is not None and bool(want[key]) != unit[key]:
            return False
    return True


def command_ok(expect: Mapping[str, Any], output: Mapping[str, Any]) -> bool:
    if output["rc"] != int(expect.get("rc", 0)):
        return False
    if "lines" in expect and not set(map(str, expect["lines"])) <= set(output["stdout_lines"]):
        return False
    if (
        "stdout_lines" in expect
        and list(map(str, expect["stdout_lines"])) != output["stdout_lines"]
    ):
        return False
    return "stdout" not in expect or str(expect["stdout"]) == output["stdout"]


# ---- declarations --------------------------------------------------------------------------


def listed(items: Any, option: str) -> list[Any]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise AnsibleActionFail(f"fedictl_state: {option} must be a list, got {items!r}")
    return items


def enabled(items: Any, option: str) -> list[Any]:
    """The items of a files, lines, packages or paths option without those marked enabled: false."""
    return [
        item
        for item in listed(items, option)
        if not (isinstance(item, dict) and not boolean(item.get("enabled", True)))
    ]


def unit_declaration(item: Any) -> dict[str, Any]:
    if isinstance(item, str):
        return {"name": item, "enabled": True, "active": True}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return {"enabled": True, "active": True, **item}
    raise AnsibleActionFail(
        f"fedictl_state: a unit is a name or {{name, enabled, active}}: {item!r}"
    )


def check_file(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
        raise AnsibleActionFail(f"fedictl_state: each file needs a path, got {item!r}")
    if item.get("state", "file") not in FILE_STATES:
        raise AnsibleActionFail(
            f"fedictl_state: {item['path']}: state must be one of {FILE_STATES}"
        )
    if item.get("state", "file") == "link" and not item.get("target"):
        raise AnsibleActionFail(f"fedictl_state: {item['path']}: a link needs its target")
    if item.get("state", "file") not in ("absent", "link") and "mode" not in item:
        raise AnsibleActionFail(f"fedictl_state: {item['path']}: give the mode, e.g. '0644'")
    return item


def check_line(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not {"path", "regexp", "line"} <= set(item):
        raise AnsibleActionFail(f"fedictl_state: each line needs path, regexp and line: {item!r}")
    return item


def probe_commands(
    commands: Mapping[str, Any], packages: list[str], units: list[dict[str, Any]]
) -> dict[str, Any]:
    run: dict[str, Any] = {}
    for name, command in commands.items():
        if not isinstance(command, dict) or ("argv" in command) == ("sh" in command):
            raise AnsibleActionFail(
                f"fedictl_state: command {name}: give argv (a list) or sh (text)"
            )
        run[name] = (
            [str(a) for a in command["argv"]] if "argv" in command else {"sh": command["sh"]}
        )
    if packages:
        showformat = "--showformat=${Package} ${db:Status-Status}\n"
        run["__packages"] = ["dpkg-query", "--show", showformat, "--", *packages]
    if units:
        properties = f"--property={UNIT_PROPERTIES}"
        run["__units"] = [
            "systemctl",
            "show",
            properties,
            "--",
            *(unit_id(u["name"]) for u in units),
        ]
    return run


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def _checksum(self, item: Mapping[str, Any], task_vars: dict[str, Any]) -> str | None:
        """The sha1 of what fedictl_sync_files would write (None: owner and mode only)."""
        text = render(self, item, task_vars)
        if text is None:
            return None
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        unknown = set(args) - set(OPTIONS)
        if unknown:
            raise AnsibleActionFail(
                f"fedictl_state: unknown options {sorted(unknown)}; use {OPTIONS}"
            )
        gates_open = boolean(task_vars.get("fedictl_gates_open", False))
        files = [check_file(item) for item in enabled(args.get("files"), "files")]
        lines = [check_line(item) for item in enabled(args.get("lines"), "lines")]
        packages = [str(p) for p in enabled(args.get("packages"), "packages")]
        # A unit's `enabled` is its wanted state, not the inclusion flag of the other parts.
        units = [unit_declaration(u) for u in listed(args.get("units"), "units")]
        commands = args.get("commands") or {}
        if not isinstance(commands, dict):
            raise AnsibleActionFail("fedictl_state: commands must be a mapping of name to command")
        line_files = list(dict.fromkeys(item["path"] for item in lines))
        spec = {
            "paths": [item["path"] for item in files] + list(enabled(args.get("paths"), "paths")),
            "read": line_files,
            "run": probe_commands(commands, packages, units),
        }
        probe = run_host_script(self, "fedictl_probe.py", spec)
        found = {entry["path"]: entry for entry in probe["files"]}
        ran = probe["run"]

        files_pending = [
            item
            for item in files
            if gates_open
            or not file_matches(item, found.get(item["path"]), self._checksum(item, task_vars))
        ]
        lines_pending: dict[str, dict[str, Any]] = {}
        for item in lines:
            if gates_open or not lines_match(
                probe["read"][item["path"]], item["regexp"], item["line"]
            ):
                entry = lines_pending.setdefault(
                    item["path"],
                    {"path": item["path"], "state": "lines", "mode": item.get("mode", "0644"),
                     "owner": item.get("owner", "root"), "group": item.get("group", "root"),
                     "lines": []},
                )  # fmt: skip
                entry["lines"].append({"regexp": item["regexp"], "line": item["line"]})
        installed = parse_installed(ran["__packages"]["stdout_lines"]) if packages else set()
        packages_missing = [p for p in packages if gates_open or p not in installed]
        live_units = parse_units(ran["__units"]["stdout"]) if units else {}
        unit_states: dict[str, dict[str, Any]] = {}
        for want in units:
            props = live_units.get(unit_id(want["name"]), {})
            unit_states[want["name"]] = {
                "unit_file_state": props.get("UnitFileState", ""),
                "active_state": props.get("ActiveState", ""),
                "enabled": props.get("UnitFileState") == "enabled",
                "active": props.get("ActiveState") == "active",
            }
        units_pending = [u for u in units if gates_open or not unit_ok(u, unit_states[u["name"]])]
        command_results: dict[str, dict[str, Any]] = {}
        for name, command in commands.items():
            output = dict(ran[name])
            expect = command.get("expect")
            output["ok"] = expect is None or command_ok(expect, output)
            output["differs"] = gates_open or not output["ok"]
            command_results[name] = output
        parts = {
            "files": bool(files_pending),
            "lines": bool(lines_pending),
            "packages": bool(packages_missing),
            "units": bool(units_pending),
            "commands": any(out["differs"] for out in command_results.values()),
        }
        result.update(
            changed=False,
            differs=gates_open or any(parts.values()),
            gates_open=gates_open,
            parts=parts,
            files_pending=files_pending,
            lines_pending=list(lines_pending.values()),
            packages_missing=packages_missing,
            units=unit_states,
            units_pending=units_pending,
            commands=command_results,
            found=found,
        )
        return result
