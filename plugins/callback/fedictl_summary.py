# GNU Affero General Public License v3.0+ (see pyproject.toml)
"""Write a per-host summary of the playbook run as JSON, for `fedictl deploy` to print.

fedictl reads this file instead of parsing Ansible's text output. The file is written once, at
the end of the run; if ansible-playbook stops before any play starts, there is no file.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: fedictl_summary
    type: aggregate
    short_description: write per-host stats of the run as JSON for fedictl
    description:
      - At the end of the playbook, writes host -> {ok, changed, failed, unreachable, skipped,
        rescued, ignored, failed_tasks} as JSON to the file named by FEDICTL_SUMMARY_FILE.
      - Only task names are recorded, never results, so no secret reaches the file.
    requirements:
      - enable in callbacks_enabled (fedictl deploy does this)
    options:
      summary_file:
        description: Path of the JSON file to write.
        env:
          - name: FEDICTL_SUMMARY_FILE
        type: path
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "fedictl_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._failed_tasks: dict[str, list[str]] = {}

    def _record_failure(self, result: Any) -> None:
        host = result._host.get_name()
        self._failed_tasks.setdefault(host, []).append(result._task.get_name())

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._record_failure(result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record_failure(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = self.get_option("summary_file")
        if not path:
            return
        hosts = {}
        for host in sorted(stats.processed):
            counts = stats.summarize(host)
            hosts[host] = {
                "ok": counts["ok"],
                "changed": counts["changed"],
                "failed": counts["failures"],
                "unreachable": counts["unreachable"],
                "skipped": counts["skipped"],
                "rescued": counts["rescued"],
                "ignored": counts["ignored"],
                "failed_tasks": self._failed_tasks.get(host, []),
            }
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"version": 1, "hosts": hosts}, handle, indent=2, sort_keys=True)
        os.replace(tmp, path)
