#!/usr/bin/env python3
"""Build the fedictl TEST STAND-IN Pixelfed release archives (not Pixelfed; tests only).

    tests/standin/build_pixelfed_standin.py --out DIR v0.14.3 v0.14.4 v0.14.5-broken
    tests/standin/build_pixelfed_standin.py --out DIR all

For each release it writes into DIR `pixelfed-standin-<release>.tar.gz` and
`<archive>.sha256` (sha256sum format), and prints the archive's path, one per line. Archives are
deterministic (sorted entries, fixed mtime, uid/gid 0 without names, fixed modes, gzip without
name or time): building twice gives the same bytes.

Like upstream's GitHub tag tarball, each has one top directory, `pixelfed-<release>/`. Its tree
is pixelfed/release/ (what every release shares) with the overlays of pixelfed/versions/ laid on
top in order (migrations accumulate; a later file replaces an earlier one), plus what the builder
generates: the version in config/pixelfed.php, composer.lock (no packages, with the content-hash
Composer computes from composer.json) and STANDIN-NOT-PIXELFED.txt. Python stdlib only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import standin_release

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "pixelfed"

# release name -> (version it reports, overlays applied in order)
RELEASES: dict[str, tuple[str, list[str]]] = {
    "v0.14.3": ("0.14.3", []),
    "v0.14.4": ("0.14.4", ["v0.14.4"]),
    "v0.14.5-broken": ("0.14.5", ["v0.14.4", "v0.14.5-broken"]),
}

MTIME = 1767225600  # 2026-01-01T00:00:00Z, every entry
EXECUTABLES = {"artisan"}
SKIPPED_NAMES = ("__pycache__", ".DS_Store", "vendor", "node_modules")
VERSION_FILE = "config/pixelfed.php"
VERSION_PLACEHOLDER = "@STANDIN_VERSION@"
# composer.json keys Composer's Locker::getContentHash() hashes (plus config.platform)
CONTENT_HASH_KEYS = (
    "name",
    "version",
    "require",
    "require-dev",
    "conflict",
    "replace",
    "provide",
    "minimum-stability",
    "prefer-stable",
    "repositories",
    "extra",
)

MARKER = """\
THIS IS NOT PIXELFED.

This tree is the fedictl test stand-in for the Pixelfed {version} release ({release}).
It was built by tests/standin/build_pixelfed_standin.py for fedictl's tests, and it must never
be deployed anywhere else. It honours the install, configuration, process and upgrade contract
of a Pixelfed 0.14.x release (composer install, .env, php artisan key:generate / migrate /
config:cache / storage:link / passport:keys / instance:actor / import:cities / user:create /
horizon, php-fpm behind nginx with root public/) with a few tables and endpoints, so that the
pixelfed role can be tested where the real release cannot be downloaded.
See tests/standin/pixelfed/README.md in the fedictl repository.
"""


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def collect(tree: Path, files: dict[str, bytes]) -> None:
    """Add the files under tree, replacing earlier ones."""
    if not tree.is_dir():
        raise BuildError(f"{tree} is missing")
    for path in sorted(tree.rglob("*")):
        if any(part in SKIPPED_NAMES for part in path.relative_to(tree).parts):
            continue
        if path.is_symlink() or not path.is_file() or path.suffix == ".pyc":
            continue
        files[path.relative_to(tree).as_posix()] = path.read_bytes()


def php_json_encode(value: Any) -> str:
    """PHP's json_encode($value) with no flags: compact, \\uXXXX escapes, escaped slashes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def content_hash(composer_json: bytes) -> str:
    """Composer's Locker::getContentHash() of a composer.json."""
    content = json.loads(composer_json)
    relevant = {key: content[key] for key in CONTENT_HASH_KEYS if key in content}
    platform = content.get("config", {}).get("platform")
    if platform is not None:
        relevant["config"] = {"platform": platform}
    ordered = dict(sorted(relevant.items()))  # ksort()
    return hashlib.md5(php_json_encode(ordered).encode()).hexdigest()  # noqa: S324 (Composer's)


def composer_lock(composer_json: bytes) -> bytes:
    """A lock file with no packages, as Composer 2 writes it for this composer.json."""
    content = json.loads(composer_json)
    lock = {
        "_readme": [
            "This file locks the dependencies of your project to a known state",
            "Read more about it at "
            "https://getcomposer.org/doc/01-basic-usage.md#installing-dependencies",
            "This file is @generated automatically",
        ],
        "content-hash": content_hash(composer_json),
        "packages": [],
        "packages-dev": [],
        "aliases": [],
        "minimum-stability": content.get("minimum-stability", "stable"),
        "stability-flags": {},
        "prefer-stable": content.get("prefer-stable", False),
        "prefer-lowest": False,
        "platform": content.get("require", {}),
        "platform-dev": {},
        "plugin-api-version": "2.6.0",
    }
    return (json.dumps(lock, indent=4, ensure_ascii=False) + "\n").encode()


def release_files(name: str) -> dict[str, bytes]:
    version, overlays = RELEASES[name]
    files: dict[str, bytes] = {}
    collect(SOURCE / "release", files)
    for overlay in overlays:
        collect(SOURCE / "versions" / overlay, files)
    text = files[VERSION_FILE].decode()
    if text.count(VERSION_PLACEHOLDER) != 1:
        raise BuildError(f"{VERSION_FILE} must hold {VERSION_PLACEHOLDER} exactly once")
    files[VERSION_FILE] = text.replace(VERSION_PLACEHOLDER, version).encode()
    files["composer.lock"] = composer_lock(files["composer.json"])
    files["STANDIN-NOT-PIXELFED.txt"] = MARKER.format(version=version, release=name).encode()
    return files


def tar_gz_bytes(top: str, files: dict[str, bytes]) -> bytes:
    """A .tar.gz with one top directory; entries sorted, fixed time, owner and modes."""
    dirs = {top}
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add(f"{top}/{'/'.join(parts[:i])}")
    entries: list[tuple[str, bytes | None]] = [(d, None) for d in dirs]
    entries += [(f"{top}/{rel}", data) for rel, data in files.items()]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, data in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(arcname)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o755 if arcname.split("/", 1)[1] in EXECUTABLES else 0o644
                tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_archive(name: str, out_dir: Path) -> Path:
    """Write pixelfed-standin-<name>.tar.gz and its .sha256 into out_dir; return the archive."""
    data = tar_gz_bytes(f"pixelfed-{name}", release_files(name))
    return standin_release.write_release(out_dir / f"pixelfed-standin-{name}.tar.gz", data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build fedictl's TEST STAND-IN Pixelfed release archives (not Pixelfed)."
    )
    parser.add_argument(
        "releases", nargs="+", metavar="RELEASE", help=f"one of {', '.join(RELEASES)}, or all"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the archives")
    args = parser.parse_args(argv)
    try:
        names = standin_release.release_names(args.releases, RELEASES, BuildError)
        args.out.mkdir(parents=True, exist_ok=True)
        archives = [build_archive(name, args.out) for name in names]
    except BuildError as exc:
        print(f"build_pixelfed_standin: {exc}", file=sys.stderr)
        return 1
    for archive in archives:
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
