#!/usr/bin/env python3
"""Build the fedictl TEST STAND-IN Mastodon release archives (not Mastodon; tests only).

    tests/standin/build_mastodon_standin.py v4.5.13 v4.5.14 --out DIR
    tests/standin/build_mastodon_standin.py all --out DIR

Each archive is `mastodon-standin-<release>.tar.gz`, whose root is the release tree (no leading
directory), as the mastodon role's `mastodon_release_archive` expects, with a
`mastodon-standin-<release>.tar.gz.sha256` beside it (sha256sum format). The archive paths are
printed, one per line. Archives are deterministic: sorted entries, fixed mtime, uid/gid 0, fixed
modes, no gzip name or time, so building twice gives the same bytes.

A release is mastodon/release/ (the code every version shares) with the overlays of
mastodon/versions/ laid on top in order (migrations accumulate; a later file replaces an earlier
one), plus two generated files: lib/mastodon/version.rb and STANDIN-NOT-MASTODON.txt.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import standin_release

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "mastodon"

# release name -> (version it reports, overlays applied in order)
RELEASES: dict[str, tuple[str, list[str]]] = {
    "v4.5.13": ("4.5.13", ["v4.5.13"]),
    "v4.5.14": ("4.5.14", ["v4.5.13", "v4.5.14"]),
    "v4.5.15-broken": ("4.5.15", ["v4.5.13", "v4.5.14", "v4.5.15-broken"]),
    # The previous line and the current one: 4.6 -> 4.7 changes .ruby-version (4.0.5 -> 4.0.10), so
    # an upgrade across them must restart the web unit fully; both need Node 22 (engines.node).
    "v4.6.9": ("4.6.9", ["v4.5.13", "v4.5.14", "v4.6.9"]),
    "v4.7.6": ("4.7.6", ["v4.5.13", "v4.5.14", "v4.6.9", "v4.7.6"]),
    "v4.7.7-broken": ("4.7.7", ["v4.5.13", "v4.5.14", "v4.6.9", "v4.7.6", "v4.7.7-broken"]),
}

MTIME = 1767225600  # 2026-01-01T00:00:00Z for every entry
EMPTY_DIRS = ("tmp", "log")  # writable by the service; tmp/ holds Gemfile.lock and restart.txt
# Bundler writes Gemfile.lock beside the Gemfile on first use. Pointing it into tmp/ lets a release
# tree that only the deployer may write (all but tmp/) still resolve Debian's gems on first use.
SYMLINKS = {"Gemfile.lock": "tmp/Gemfile.lock"}
NEVER_SHIPPED = ("public/system", ".env.production", "node_modules", "vendor/bundle")
SKIPPED_NAMES = ("__pycache__", ".DS_Store")

VERSION_RB = """\
# frozen_string_literal: true

# Written by tests/standin/build_mastodon_standin.py: fedictl TEST STAND-IN, NOT Mastodon.
module Mastodon
  module Version
    STANDIN_VERSION = '{version}'

    module_function

    def to_a
      STANDIN_VERSION.split('.').map(&:to_i)
    end

    def major
      to_a[0]
    end

    def minor
      to_a[1]
    end

    def patch
      to_a[2]
    end

    def to_s
      STANDIN_VERSION
    end
  end
end
"""

MARKER = """\
THIS IS NOT MASTODON.

This tree is the fedictl test stand-in for the Mastodon {version} release ({release}).
It was built by tests/standin/build_mastodon_standin.py for fedictl's tests, and it must never
be deployed anywhere else. It honours the command and process contract of a real Mastodon 4.5.x
release (bin/rails db:prepare / db:migrate / assets:precompile, bin/tootctl, puma, sidekiq,
node ./streaming) with a few tables and endpoints, so that the mastodon role can be tested where
the real release cannot be downloaded. See tests/standin/README.md in the fedictl repository.
"""


@dataclass(frozen=True)
class Entry:
    """One archive member: a file (data), a directory or a symlink (target)."""

    kind: str  # "file", "dir" or "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""


def collect(tree: Path, entries: dict[str, Entry]) -> None:
    """Add the files under tree, keeping their executable bit, replacing earlier entries."""
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if any(part in SKIPPED_NAMES for part in path.parts) or path.suffix == ".pyc":
            continue
        if any(rel == never or rel.startswith(f"{never}/") for never in NEVER_SHIPPED):
            raise SystemExit(f"{path}: {rel} must never be in a release archive")
        if path.is_symlink() or not path.is_file():
            continue
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        entries[rel] = Entry("file", mode, path.read_bytes())


def release_entries(name: str) -> dict[str, Entry]:
    version, overlays = RELEASES[name]
    entries: dict[str, Entry] = {}
    collect(SOURCE / "release", entries)
    for overlay in overlays:
        collect(SOURCE / "versions" / overlay, entries)
    entries["lib/mastodon/version.rb"] = Entry(
        "file", 0o644, VERSION_RB.format(version=version).encode()
    )
    entries["STANDIN-NOT-MASTODON.txt"] = Entry(
        "file", 0o644, MARKER.format(version=version, release=name).encode()
    )
    for link, target in SYMLINKS.items():
        entries[link] = Entry("symlink", 0o777, target=target)
    for directory in EMPTY_DIRS:
        entries[directory] = Entry("dir")
    for rel in list(entries):
        parent = Path(rel).parent
        while parent != Path("."):
            entries.setdefault(parent.as_posix(), Entry("dir"))
            parent = parent.parent
    return entries


def tar_bytes(entries: dict[str, Entry]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel in sorted(entries):
            entry = entries[rel]
            info = tarfile.TarInfo(rel)
            info.mtime = MTIME
            info.mode = entry.mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as out:
        out.write(raw.getvalue())
    return gz.getvalue()


def build(name: str, out_dir: Path) -> Path:
    """Write mastodon-standin-<name>.tar.gz and its .sha256 into out_dir; return the archive."""
    data = tar_bytes(release_entries(name))
    return standin_release.write_release(out_dir / f"mastodon-standin-{name}.tar.gz", data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build fedictl's TEST STAND-IN Mastodon release archives (not Mastodon)."
    )
    parser.add_argument(
        "versions", nargs="+", metavar="VERSION", help=f"one of {', '.join(RELEASES)}, or all"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the archives")
    args = parser.parse_args(argv)
    names = standin_release.release_names(args.versions, RELEASES, SystemExit)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(build(name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
