"""fedictl_sync_files: bring many small files, directories and removals on a host to their declared
state in one remote call, writing only what differs.

ansible.builtin.template costs a stat and a copy module on the host per file (~0.5 s); a role that
writes fifteen files on a fresh host spends most of its time there. This action renders each item's
template on the controller, exactly as the template lookup does (the probes compare the live files
with the same rendering), and sends every item in one request on standard input to the writer,
plugins/host/fedictl_write.py (python3 -c, through become): nothing secret is on a command line or
in a temporary file other than the candidate beside the live file. The writer changes only what
differs, replaces files atomically, runs each item's validate command on the candidate, and writes
nothing in check mode. Shared by the fedictl roles; fedictl_state returns the items that differ in
this form.

Options:
  items: list of {path, state: file|directory|absent|lines|link (file), src: template |
         content: text, target (link),
         lines: [{regexp, line}] (state lines: edit an existing file as lineinfile does), mode,
         owner (root), group (root), validate: command with %s, vars: extra template variables,
         diff: false to keep this item's content out of --diff (secrets)}
Returns: changed, changed_paths (the paths the writer changed, or would in check mode), diff.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


@functools.cache
def _state() -> Any:
    """fedictl_state.py beside this file: the host-script runner and the renderer they share."""
    path = Path(__file__).with_name("fedictl_state.py")
    spec = importlib.util.spec_from_file_location("fedictl_state_plugin", path)
    assert spec is not None and spec.loader is not None  # noqa: S101 (the file is beside this one)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STATES = ("file", "directory", "absent", "lines", "link")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def _request_item(self, item: Any, task_vars: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
            raise AnsibleActionFail(f"fedictl_sync_files: each item needs a path, got {item!r}")
        path = item["path"]
        state = item.get("state", "file")
        if state not in STATES:
            raise AnsibleActionFail(f"fedictl_sync_files: {path}: state must be one of {STATES}")
        request: dict[str, Any] = {"path": path, "state": state}
        if state == "absent":
            return request
        if state == "link":
            if not isinstance(item.get("target"), str) or not item["target"]:
                raise AnsibleActionFail(f"fedictl_sync_files: {path}: a link needs its target")
            return {**request, "target": item["target"]}
        if "mode" not in item:
            raise AnsibleActionFail(f"fedictl_sync_files: {path}: give the mode, e.g. '0644'")
        request.update(
            mode=str(item["mode"]),
            owner=item.get("owner", "root"),
            group=item.get("group", "root"),
            diff=bool(item.get("diff", True)),
        )
        if state == "directory":
            return request
        if state == "lines":
            edits = item.get("lines")
            if (
                not isinstance(edits, list)
                or not edits
                or not all(
                    isinstance(edit, dict) and set(edit) == {"regexp", "line"} for edit in edits
                )
            ):
                raise AnsibleActionFail(
                    f"fedictl_sync_files: {path}: lines must be a list of {{regexp, line}}: "
                    f"{edits!r}"
                )
            request["lines"] = [{"regexp": str(e["regexp"]), "line": str(e["line"])} for e in edits]
            if item.get("validate"):
                request["validate"] = str(item["validate"])
            return request
        content = _state().render(self, item, task_vars)
        if content is None:
            raise AnsibleActionFail(f"fedictl_sync_files: {path}: give src (a template) or content")
        request["content"] = content
        if item.get("validate"):
            request["validate"] = str(item["validate"])
        return request

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result: dict[str, Any] = super().run(tmp, task_vars)
        items = self._task.args.get("items")
        unknown = set(self._task.args) - {"items"}
        if unknown or not isinstance(items, list):
            raise AnsibleActionFail("fedictl_sync_files takes one option, items: a list of files")
        request = {
            "check": bool(self._task.check_mode),
            "diff": bool(self._task.diff),
            "items": [self._request_item(item, task_vars) for item in items],
        }
        if not request["items"]:
            return {**result, "changed": False, "changed_paths": []}
        output = _state().run_host_script(self, "fedictl_write.py", request)
        changed = [entry for entry in output["results"] if entry["changed"]]
        result.update(
            changed=bool(changed),
            changed_paths=[entry["path"] for entry in changed],
            diff=[entry["diff"] for entry in changed if "diff" in entry],
        )
        if "failed" in output:
            result.update(failed=True, msg=f"fedictl_sync_files: {output['failed']}")
        return result
