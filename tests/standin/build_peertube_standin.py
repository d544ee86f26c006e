#!/usr/bin/env python3
"""Build the fedictl TEST STAND-IN PeerTube release zips (not PeerTube; tests only).

    tests/standin/build_peertube_standin.py --out DIR v8.2.4 v8.3.2 v8.3.3-broken
    tests/standin/build_peertube_standin.py --out DIR all

For each release it writes into DIR `peertube-standin-<release>.zip` (deterministic bytes: sorted
entries, fixed times and modes, stored without compression), `<zip>.sha256` (sha256sum format)
and `<zip>.asc` (a detached, ASCII-armoured GPG signature), and prints the zip's path, one per
line. Each run also writes `DIR/signing-key.asc` (the public key, armoured) and
`DIR/signing-key.fingerprint` (40 hex characters): a throwaway TEST key made in a temporary
GNUPGHOME, deleted afterwards. Every stand-in zip already in DIR is signed again with that key,
so the key in DIR verifies every `.asc` in DIR. Signatures differ between runs; zips do not.

Like upstream's release zip, each has one top directory, `peertube-<release>/`. Its tree is
peertube/release/ (what every release shares) with the overlays of peertube/versions/ laid on
top in order (migrations accumulate; a later file replaces an earlier one; `<file>.append`
appends to `<file>`), plus two generated files: package.json and STANDIN-NOT-PEERTUBE.txt.
Needs gpg (Debian's gnupg) for the signatures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import standin_release

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "peertube"

# release name -> (version it reports, overlays applied in order)
RELEASES: dict[str, tuple[str, list[str]]] = {
    "v8.2.4": ("8.2.4", ["v8.2.4"]),
    "v8.3.2": ("8.3.2", ["v8.2.4", "v8.3.2"]),
    "v8.3.3-broken": ("8.3.3", ["v8.2.4", "v8.3.2", "v8.3.3-broken"]),
}

# The pnpm that package.json's packageManager names: pnpm 10 insists on exactly this version
# (it would download it otherwise); the sha512 is that of the npm tarball, as corepack checks it.
PNPM_VERSION = "10.34.9"
PNPM_SHA512 = (
    "f49b5a8ea0fdedb44bb3c0c1d6575092a53c2950d95b7ad15df11f17974877a2"
    "de3a01c07e934e9b28ce716e51c09a94962c7306d09be2e1e4b18a8c8762fd32"
)
NODE_ENGINE = ">=22.12.0"

DATE_TIME = (2026, 1, 1, 0, 0, 0)  # every zip entry
SKIPPED_NAMES = ("__pycache__", ".DS_Store", "node_modules")
APPEND_SUFFIX = ".append"
KEY_UID = "fedictl TEST-ONLY PeerTube stand-in release key <peertube-standin@fedictl.invalid>"
ZIP_GLOB = "peertube-standin-*.zip"

MARKER = """\
THIS IS NOT PEERTUBE.

This tree is the fedictl test stand-in for the PeerTube {version} release ({release}).
It was built by tests/standin/build_peertube_standin.py for fedictl's tests, and it must never
be deployed anywhere else. It honours the install, configuration, process and upgrade contract
of a PeerTube 8.x release zip (node dist/server with NODE_CONFIG_DIR and NODE_ENV, config/,
pnpm install --frozen-lockfile, npm run reset-password, migrations at start, the 8.3 manual
script) with a few tables and endpoints, so that the peertube role can be tested where the real
release cannot be downloaded. See tests/standin/peertube/README.md in the fedictl repository.
"""


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def collect(tree: Path, files: dict[str, bytes]) -> None:
    """Add the files under tree, replacing earlier ones; `X.append` appends to X."""
    for path in sorted(tree.rglob("*")):
        if any(part in SKIPPED_NAMES for part in path.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(tree).as_posix()
        if rel.endswith(APPEND_SUFFIX):
            target = rel.removesuffix(APPEND_SUFFIX)
            if target not in files:
                raise BuildError(f"{path}: nothing to append to ({target} is not in the tree)")
            files[target] += path.read_bytes()
        else:
            files[rel] = path.read_bytes()


def package_json(name: str, version: str) -> bytes:
    manifest = {
        "name": "peertube-standin",
        "description": f"fedictl TEST STAND-IN for PeerTube {version}: NOT PeerTube, tests only",
        "version": version,
        "private": True,
        "licence": "AGPL-3.0",
        "engines": {"node": NODE_ENGINE},
        "packageManager": f"pnpm@{PNPM_VERSION}+sha512.{PNPM_SHA512}",
        "scripts": {
            "start": "node dist/server",
            "install-node-dependencies": "pnpm install --frozen-lockfile",
            "reset-password": "node dist/scripts/reset-password.js",
        },
        "standin": {"release": name, "notPeerTube": True},
    }
    return (json.dumps(manifest, indent=2) + "\n").encode()


def release_files(name: str) -> dict[str, bytes]:
    version, overlays = RELEASES[name]
    files: dict[str, bytes] = {}
    collect(SOURCE / "release", files)
    for overlay in overlays:
        collect(SOURCE / "versions" / overlay, files)
    files["package.json"] = package_json(name, version)
    files["STANDIN-NOT-PEERTUBE.txt"] = MARKER.format(version=version, release=name).encode()
    return files


def zip_bytes(top: str, files: dict[str, bytes]) -> bytes:
    """A zip with one top directory; entries sorted, fixed time and modes, stored."""
    dirs = {top}
    for rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add(f"{top}/{'/'.join(parts[:i])}")
    entries = sorted([(d + "/", None) for d in dirs] + [(f"{top}/{r}", files[r]) for r in files])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=DATE_TIME)
            info.create_system = 3  # Unix, so unzip applies the modes below
            info.compress_type = zipfile.ZIP_STORED
            if data is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = 0o100644 << 16
                zf.writestr(info, data)
    return out.getvalue()


def build_zip(name: str, out_dir: Path) -> Path:
    """Write peertube-standin-<name>.zip and its .sha256 into out_dir; return the zip."""
    data = zip_bytes(f"peertube-{name}", release_files(name))
    return standin_release.write_release(out_dir / f"peertube-standin-{name}.zip", data)


# ---- the throwaway signing key ---------------------------------------------------------------


def gpg(argv: list[str], env: dict[str, str]) -> str:
    try:
        done = subprocess.run(["gpg", "--batch", *argv], capture_output=True, env=env, check=False)
    except FileNotFoundError as exc:
        raise BuildError("gpg is missing: apt-get install gnupg") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise BuildError(f"gpg {' '.join(argv[:3])} ... failed (exit {done.returncode}): {err}")
    return done.stdout.decode(errors="replace")


@contextmanager
def throwaway_gnupg() -> Iterator[dict[str, str]]:
    """An environment whose GNUPGHOME is a fresh temporary directory, removed afterwards."""
    home = tempfile.mkdtemp(prefix="fedictl-ptgpg-")  # short: gpg-agent's socket path
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": home, "LC_ALL": "C"}
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def sign_all(out_dir: Path) -> str:
    """Make a key, sign every stand-in zip in out_dir, export the public key; return its fpr."""
    with throwaway_gnupg() as env:
        nopass = ["--pinentry-mode", "loopback", "--passphrase", ""]
        gpg([*nopass, "--quick-generate-key", KEY_UID, "ed25519", "sign", "never"], env)
        listing = gpg(["--with-colons", "--list-secret-keys"], env)
        fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        if not fprs:
            raise BuildError("gpg made no key")
        fpr = fprs[0]
        for archive in sorted(out_dir.glob(ZIP_GLOB)):
            signature = archive.with_name(f"{archive.name}.asc")
            gpg(
                [
                    *nopass,
                    "--yes",
                    "--local-user",
                    fpr,
                    "--armor",
                    "--detach-sign",
                    "--output",
                    str(signature),
                    str(archive),
                ],
                env,
            )
        key = gpg(["--armor", "--export", fpr], env)
    standin_release.write_atomic(out_dir / "signing-key.asc", key.encode())
    standin_release.write_atomic(out_dir / "signing-key.fingerprint", f"{fpr}\n".encode())
    return fpr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build fedictl's TEST STAND-IN PeerTube release zips (not PeerTube)."
    )
    parser.add_argument(
        "releases", nargs="+", metavar="RELEASE", help=f"one of {', '.join(RELEASES)}, or all"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for the zips")
    args = parser.parse_args(argv)
    try:
        names = standin_release.release_names(args.releases, RELEASES, BuildError)
        args.out.mkdir(parents=True, exist_ok=True)
        archives = [build_zip(name, args.out) for name in names]
        sign_all(args.out)
    except BuildError as exc:
        print(f"build_peertube_standin: {exc}", file=sys.stderr)
        return 1
    for archive in archives:
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
