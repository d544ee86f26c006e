"""Filters over fedictl_state's answers, for declarations that depend on what the probe found.

A role whose wanted state depends on the probe's own answers (common: systemd-timesyncd only where
no other time daemon is installed) declares those parts after the probe and asks these filters,
which use the action's own comparison (plugins/action/fedictl_state.py), so no verdict is written
twice."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any


@functools.cache
def _state() -> Any:
    path = Path(__file__).resolve().parent.parent / "action" / "fedictl_state.py"
    spec = importlib.util.spec_from_file_location("fedictl_state_plugin", path)
    assert spec is not None and spec.loader is not None  # noqa: S101 (it is in plugins/action)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def units_pending(
    declarations: list[Any], units: dict[str, dict[str, Any]], gates_open: bool = False
) -> list[dict[str, Any]]:
    """The unit declarations (as fedictl_state takes them) that the live units (fedictl_state's
    `units`, which must have reported each of them) do not meet; all of them with the gates open."""
    state = _state()
    wanted = [state.unit_declaration(item) for item in declarations]
    return [w for w in wanted if gates_open or not state.unit_ok(w, units[w["name"]])]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"fedictl_units_pending": units_pending}
