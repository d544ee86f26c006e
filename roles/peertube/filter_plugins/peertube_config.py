"""peertube role filters: the keys of PeerTube's YAML configuration as dotted paths.

They run on the controller. `peertube_key_paths` lists the leaves of a configuration mapping (a
value that is not a mapping, or an empty one: `rates_limit.api.window`, `trust_proxy`); the role
compares them with a release's
`config/production.yaml.example` to report the keys it knows neither as written nor as left to
`default.yaml` (`peertube_unknown_keys`), and refuses `peertube_settings` that would set a key the
role writes itself (`peertube_key_clashes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def key_paths(data: object, prefix: str = "") -> list[str]:
    """The dotted paths of the leaves of `data`, sorted; [] for anything but a mapping."""
    if not isinstance(data, Mapping):
        return []
    paths: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            paths += key_paths(value, f"{path}.")
        else:
            paths.append(path)
    return sorted(paths)


def _related(a: str, b: str) -> bool:
    """The same key, or one a section holding the other."""
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


def key_clashes(settings: object, managed: Iterable[str]) -> list[str]:
    """The leaves of `settings` that are a managed key, hold one, or lie below one."""
    managed = list(managed)
    return [path for path in key_paths(settings) if any(_related(path, m) for m in managed)]


def unknown_keys(example: object, known: Iterable[str]) -> list[str]:
    """The leaves of `example` that no known key covers (equal to it, or a leaf above it)."""
    known = set(known)
    unknown = []
    for path in key_paths(example):
        parts = path.split(".")
        if not any(".".join(parts[:n]) in known for n in range(1, len(parts) + 1)):
            unknown.append(path)
    return unknown


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "peertube_key_paths": key_paths,
            "peertube_key_clashes": key_clashes,
            "peertube_unknown_keys": unknown_keys,
        }
