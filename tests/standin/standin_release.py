"""What every TEST-ONLY stand-in release builder in this directory shares (fedictl tests only).

The builders (build_mastodon_standin.py, build_peertube_standin.py, build_pixelfed_standin.py) run
as scripts, so this module is found beside them. Python stdlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def release_names(args: list[str], known: Iterable[str], error: type[BaseException]) -> list[str]:
    """Normalise RELEASE arguments ("8.3.2" or "v8.3.2", "all") to release names, in order and
    once each; an unknown one raises ``error`` naming the known releases."""
    releases = list(known)
    names: list[str] = []
    for arg in args:
        if arg == "all":
            names.extend(releases)
            continue
        name = arg if arg.startswith("v") else f"v{arg}"
        if name not in releases:
            raise error(f"unknown stand-in release {arg!r}; known: {', '.join(releases)}, all")
        names.append(name)
    return list(dict.fromkeys(names))


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path through a temporary file beside it, so no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_release(archive: Path, data: bytes) -> Path:
    """Write the archive and ``<archive>.sha256`` (sha256sum's format) beside it; return it."""
    write_atomic(archive, data)
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(
        archive.with_name(f"{archive.name}.sha256"), f"{digest}  {archive.name}\n".encode()
    )
    return archive
