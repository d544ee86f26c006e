"""fedictl_units: bring systemd units to their declared state in one remote call.

ansible.builtin.systemd_service makes a module call (~0.2 s of start-up on the host) per unit; a
role that manages ten units pays that on every fresh host. This action sends one shell program
that, for each unit, asks systemctl whether it is enabled and active, changes only what differs and
reports what it changed, so `changed` is honest even when a task passes units that are already as
declared (as it does with fedictl_state's gates open).

Options:
  units: [name | {name, enabled: true|false|null, active: true|false|null}] — the declarations
         fedictl_state takes (its units_pending can be passed as they are); a bare name means
         enabled and active; null leaves that side alone.
Returns: changed, changed_units ["enable nginx.service", "start nginx.service", ...] (in check mode:
what a real run would do, nothing done).
"""

from __future__ import annotations

import shlex
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# (declared key, wanted value) -> (the question, whose success means "already so", the change).
STEPS = {
    ("enabled", True): ("is-enabled", True, "enable"),
    ("enabled", False): ("is-enabled", False, "disable"),
    ("active", True): ("is-active", True, "start"),
    ("active", False): ("is-active", False, "stop"),
}


def declaration(item: Any) -> dict[str, Any]:
    if isinstance(item, str) and item:
        return {"name": item, "enabled": True, "active": True}
    if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
        return {"enabled": True, "active": True, **item}
    raise AnsibleActionFail(
        f"fedictl_units: a unit is a name or {{name, enabled, active}}: {item!r}"
    )


def program(units: list[dict[str, Any]], check: bool) -> str:
    """The shell program: for each unit and side, ask, and change only what differs."""
    lines = ["set -e", "export SYSTEMD_PAGER= SYSTEMD_COLORS=0"]
    for unit in units:
        name = shlex.quote(unit["name"])
        for key in ("enabled", "active"):
            if unit.get(key) is None:
                continue
            question, already_when_true, verb = STEPS[(key, bool(unit[key]))]
            asked = f"systemctl {question} --quiet -- {name}"
            test = asked if already_when_true else f"! {asked}"
            act = "true" if check else f"systemctl {verb} --quiet -- {name}"
            said = shlex.quote(f"{verb} {unit['name']}")
            lines.append(f"if ! {{ {test}; }}; then {act}; echo {said}; fi")
    return "\n".join(lines) + "\n"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars or {})
        units = self._task.args.get("units")
        if set(self._task.args) - {"units"} or not isinstance(units, list):
            raise AnsibleActionFail("fedictl_units takes one option, units: a list of units")
        if not units:
            return {**result, "changed": False, "changed_units": []}
        script = program([declaration(u) for u in units], bool(self._task.check_mode))
        answer = self._low_level_execute_command(
            "/bin/sh -s", in_data=script.encode(), sudoable=True
        )
        done = [line for line in answer["stdout"].splitlines() if line.strip()]
        result.update(changed=bool(done), changed_units=done)
        if answer["rc"] != 0:
            detail = (answer["stderr"] or answer["stdout"]).strip()[-2000:]
            result.update(
                failed=True, msg=f"fedictl_units: systemctl failed (rc {answer['rc']}): {detail}"
            )
        return result
