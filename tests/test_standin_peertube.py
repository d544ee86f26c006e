"""The TEST STAND-IN PeerTube release zips (tests/standin/peertube/): build, contract, behaviour.

Builds the zips into a temporary directory with tests/standin/build_peertube_standin.py and checks
what the peertube role relies on: one `peertube-<release>/` top directory, upstream's files and
package.json scripts, the pnpm lock, signatures that verify with the exported key, byte-identical
rebuilds. Then it runs the stand-in for real with this machine's node: its YAML parser against
PyYAML, node-config's file order, the refusals at start, and, on a throwaway PostgreSQL cluster
(PostgreSQL's server binaries, as on Debian) with a small Redis double that checks AUTH/SELECT,
the whole life cycle: install, API, OAuth, upload to HLS with the real ffmpeg, upgrade with the
8.3 manual script, reset-password, the broken release and the rollback by dump. Parts whose tools
are missing here (node, PostgreSQL, ffmpeg, pnpm) are skipped with the reason;
tests/standin/lab_check_peertube_standin.sh runs the same on a Debian 13 lab host with real Redis,
nginx and systemd.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "tests" / "standin" / "build_peertube_standin.py"
SOURCE = ROOT / "tests" / "standin" / "peertube"
PNPM_CACHE = ROOT / ".work" / "cache" / "pnpm"

RELEASES = {"v8.2.4": "8.2.4", "v8.3.2": "8.3.2", "v8.3.3-broken": "8.3.3"}
MIGRATIONS = {
    "v8.2.4": ["1077-standin-initial-schema.js"],
    "v8.3.2": [
        "1077-standin-initial-schema.js",
        "1125-standin-streaming-playlist-storage-bytes.js",
    ],
    "v8.3.3-broken": [
        "1077-standin-initial-schema.js",
        "1125-standin-streaming-playlist-storage-bytes.js",
        "1130-standin-video-v833-marker.js",
    ],
}
RELEASE_FILES = [
    "package.json",
    "pnpm-lock.yaml",
    "STANDIN-NOT-PEERTUBE.txt",
    "config/default.yaml",
    "config/production.yaml.example",
    "dist/server.js",
    "dist/scripts/reset-password.js",
    "support/systemd/peertube.service",
    "support/nginx/peertube",
]
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed here")
ROOT_PASSWORD = "root-Pass 1$x"
REDIS_PASSWORD = "r3dis pass#1"
REDIS_DB = 5
MARK = "(fedictl test stand-in, not PeerTube)"


def build(out: Path, *releases: str) -> list[Path]:
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out), *releases],
        capture_output=True,
        text=True,
        check=True,
    )
    return [Path(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = build(tmp_path_factory.mktemp("pt-standin"), "all")
    return {p.name.removeprefix("peertube-standin-").removesuffix(".zip"): p for p in paths}


def read(archive: Path, name: str) -> str:
    with zipfile.ZipFile(archive) as zf:
        return zf.read(name).decode()


def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return zf.namelist()


def unpack(archive: Path, into: Path) -> Path:
    """Unzip as upstream's guide does; return the release directory."""
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)
        top = zf.namelist()[0].rstrip("/")
    return into / top


def key_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    paths: set[str] = set()
    for key, value in node.items():
        paths |= key_paths(value, f"{prefix}.{key}" if prefix else str(key))
    return paths


# ---- the builder and the zips ------------------------------------------------------------------


def test_builder_writes_zip_checksum_signature_and_key(built: dict[str, Path]) -> None:
    assert sorted(built) == sorted(RELEASES)
    out = next(iter(built.values())).parent
    for release, archive in built.items():
        assert archive.name == f"peertube-standin-{release}.zip"
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert archive.with_name(f"{archive.name}.sha256").read_text() == (
            f"{digest}  {archive.name}\n"
        )
        assert (
            archive.with_name(f"{archive.name}.asc")
            .read_text()
            .startswith("-----BEGIN PGP SIGNATURE-----")
        )
    assert (out / "signing-key.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert re.fullmatch(r"[0-9A-F]{40}\n", (out / "signing-key.fingerprint").read_text())


def gpg_verify(out: Path, archive: Path) -> subprocess.CompletedProcess[str]:
    home = Path(tempfile.mkdtemp(prefix="ptv-"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C"}
    try:
        subprocess.run(
            ["gpg", "--batch", "--import", str(out / "signing-key.asc")],
            env=env,
            capture_output=True,
            check=True,
        )
        listing = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-keys"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        fprs = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        assert fprs == [(out / "signing-key.fingerprint").read_text().strip()]
        return subprocess.run(
            [
                "gpg",
                "--batch",
                "--status-fd=1",
                "--verify",
                str(archive.with_name(f"{archive.name}.asc")),
                str(archive),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_signatures_verify_with_the_exported_key_and_catch_tampering(
    built: dict[str, Path], tmp_path: Path
) -> None:
    out = next(iter(built.values())).parent
    fpr = (out / "signing-key.fingerprint").read_text().strip()
    for archive in built.values():
        done = gpg_verify(out, archive)
        assert done.returncode == 0, done.stderr
        assert f"VALIDSIG {fpr}" in done.stdout
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("signing-key.asc", "signing-key.fingerprint"):
        shutil.copy(out / name, copy / name)
    tampered = copy / built["v8.3.2"].name
    tampered.write_bytes(built["v8.3.2"].read_bytes() + b"\0")
    shutil.copy(built["v8.3.2"].with_name(f"{tampered.name}.asc"), copy)
    done = gpg_verify(copy, tampered)
    assert done.returncode != 0 and "BADSIG" in done.stdout


def test_building_into_the_same_directory_again_resigns_every_zip(tmp_path: Path) -> None:
    (first,) = build(tmp_path, "v8.2.4")
    (second,) = build(tmp_path, "8.3.2")
    for archive in (first, second):
        assert gpg_verify(tmp_path, archive).returncode == 0, archive


def test_building_twice_gives_identical_zips(tmp_path: Path) -> None:
    one = build(tmp_path / "one", "v8.2.4", "v8.3.2", "v8.3.3-broken")
    two = build(tmp_path / "two", "all")
    assert [p.name for p in one] == [p.name for p in two]
    for a, b in zip(one, two, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert (
            a.with_name(f"{a.name}.sha256").read_bytes()
            == b.with_name(f"{b.name}.sha256").read_bytes()
        )


def test_unknown_release_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(tmp_path), "v9.9.9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "unknown stand-in release 'v9.9.9'" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_zip_has_one_top_directory_with_upstreams_layout(
    built: dict[str, Path], release: str
) -> None:
    archive = built[release]
    top = f"peertube-{release}/"
    entries = names(archive)
    assert entries[0] == top
    assert all(name.startswith(top) for name in entries)
    for name in RELEASE_FILES:
        assert top + name in entries, name
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            assert info.date_time == (2026, 1, 1, 0, 0, 0)
            mode = info.external_attr >> 16
            assert mode == (0o40755 if info.is_dir() else 0o100644), info.filename
            assert not info.filename.startswith(f"{top}node_modules")
    marker = read(archive, top + "STANDIN-NOT-PEERTUBE.txt")
    assert marker.startswith("THIS IS NOT PEERTUBE.")
    assert f"PeerTube {RELEASES[release]} release ({release})" in marker


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_package_json_honours_upstreams_contract(built: dict[str, Path], release: str) -> None:
    manifest = json.loads(read(built[release], f"peertube-{release}/package.json"))
    assert manifest["name"] == "peertube-standin"
    assert manifest["version"] == RELEASES[release]
    assert manifest["engines"] == {"node": ">=22.12.0"}
    assert re.fullmatch(r"pnpm@10\.\d+\.\d+\+sha512\.[0-9a-f]{128}", manifest["packageManager"])
    assert manifest["scripts"]["reset-password"] == "node dist/scripts/reset-password.js"
    assert manifest["scripts"]["install-node-dependencies"] == "pnpm install --frozen-lockfile"
    for key in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
        assert key not in manifest
    lock = yaml.safe_load(read(built[release], f"peertube-{release}/pnpm-lock.yaml"))
    assert lock["lockfileVersion"] == "9.0"
    assert lock["importers"] == {".": {}}
    assert "packages" not in lock


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_migrations_and_manual_script_per_release(built: dict[str, Path], release: str) -> None:
    top = f"peertube-{release}/"
    entries = names(built[release])
    migrations = sorted(
        n.removeprefix(f"{top}dist/core/migrations/")
        for n in entries
        if n.startswith(f"{top}dist/core/migrations/") and n.endswith(".js")
    )
    assert migrations == MIGRATIONS[release]
    assert (f"{top}dist/scripts/migrations/peertube-8.3.js" in entries) == (release != "v8.2.4")
    hooks = read(built[release], f"{top}dist/core/release-hooks.js")
    assert ("broken on purpose" in hooks) == (release == "v8.3.3-broken")


def test_the_8_3_example_config_has_one_key_more(built: dict[str, Path]) -> None:
    def example(release: str) -> set[str]:
        text = read(built[release], f"peertube-{release}/config/production.yaml.example")
        return key_paths(yaml.safe_load(text))

    assert example("v8.3.2") - example("v8.2.4") == {"video_comments.max_direct_replies"}
    assert example("v8.2.4") <= example("v8.3.2")
    for release in RELEASES:
        default = yaml.safe_load(read(built[release], f"peertube-{release}/config/default.yaml"))
        assert example(release) <= key_paths(default), release  # default.yaml has every key


def test_systemd_unit_and_nginx_site_are_shaped_like_upstreams(built: dict[str, Path]) -> None:
    top = "peertube-v8.3.2/"
    unit = read(built["v8.3.2"], top + "support/systemd/peertube.service")
    for line in (
        "After=network.target postgresql.service redis-server.service",
        "Type=simple",
        "Environment=NODE_ENV=production",
        "Environment=NODE_CONFIG_DIR=/var/www/peertube/config",
        "User=peertube",
        "Group=peertube",
        "ExecStart=/usr/bin/node dist/server",
        "WorkingDirectory=/var/www/peertube/peertube-latest",
        "SyslogIdentifier=peertube",
        "Restart=always",
        "ProtectSystem=full",
        "PrivateDevices=false",
        "NoNewPrivileges=true",
        "ProtectHome=true",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
    ):
        assert line in unit.splitlines(), line
    site = read(built["v8.3.2"], top + "support/nginx/peertube")
    assert "server ${PEERTUBE_HOST};" in site
    assert "ssl_certificate     /etc/letsencrypt/live/${WEBSERVER_HOST}/fullchain.pem;" in site
    assert "root /var/www/peertube/storage;" in site
    assert "location ~ ^/static/(webseed|web-videos|redundancy|streaming-playlists)/ {" in site
    for directive in ("sendfile           on;", "aio                threads;"):
        assert directive in site
    assert "limit_rate_after            5M;" in site
    assert "add_header Access-Control-Allow-Origin  '*';" in site
    assert "client_max_body_size    12G;" in site


# ---- the stand-in's own code, run with this machine's node ----------------------------------

YAML_SAMPLES = [
    "a: 1\nb: -2\nc: 1.5\nd: 1.5e+3\ne: 0x1F\n",  # where YAML 1.1 and 1.2 agree
    "s1: 'it''s'\ns2: \"tab\\tnew\\nline \\u00e9\"\n"
    "s3: plain text # comment\ns4: '#not a comment'\n",
    "t: true\nf: False\nn: null\nt2: ~\nempty:\nsize: 12MB\nwhen: 1 hour\nurl: https://x.test/a?b=c\n",
    "list:\n  - a\n  - 'b'\n  - 3\nflow: [a, 'b c', 2, []]\nmap: {}\nm2: {a: 1, b: [x]}\n",
    "sizes:\n  -\n    width: 280\n    height: 157\n  - width: 850\n    height: 480\n",
    "same_indent:\n- one\n- two\nnext: 1\n",
    "nested:\n  deeper:\n    deepest: 'x'\n  other: [1, 2]\n# trailing comment\n",
    "lit: |\n  line one\n  line two # kept\n\nfold: >\n  a\n  b\n\n  c\n"
    "strip: |-\n  x\nkeep: |+\n  y\n\nz: 1\n",
    "---\nkey: value\n...\n",
    "seq_of_maps:\n  - host: ''\n    port: 26379\n  - host: 'h2'\n    port: 1\n",
    "quoted_key:\n  'a b': 1\n  \"c\": 2\n0p: false\n144p: true\n",
]
YAML_ERRORS = [
    ("a: &x 1\nb: *x\n", "anchors, aliases and tags"),
    ("a: 1\na: 2\n", "duplicated mapping key"),
    ("a:\n\tb: 1\n", "tabs"),
    ("a: 1\n  b: 2\n", "bad.yaml:2:"),
    ("a: [1,\n  2]\n", "multi-line flow"),
    ("a: plain\n  continued\n", "multi-line plain"),
]


def node_eval(script: str, *args: str, cwd: Path | None = None) -> str:
    assert NODE is not None
    done = subprocess.run(
        [NODE, "-e", script, "--", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def release_tree(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(built["v8.3.2"], tmp_path_factory.mktemp("tree"))


@needs_node
@pytest.mark.parametrize("text", YAML_SAMPLES)
def test_yaml_parser_agrees_with_pyyaml(release_tree: Path, text: str) -> None:
    out = node_eval(
        "const {parseYaml} = require(process.argv[1]);"
        "process.stdout.write(JSON.stringify(parseYaml(process.argv[2], 'sample.yaml')))",
        str(release_tree / "dist/core/yaml.js"),
        text,
    )
    assert json.loads(out) == yaml.safe_load(text)


@needs_node
@pytest.mark.parametrize(("text", "message"), YAML_ERRORS)
def test_yaml_parser_refuses_what_it_does_not_support(
    release_tree: Path, text: str, message: str
) -> None:
    with pytest.raises(AssertionError, match=re.escape(message)):
        node_eval(
            "const {parseYaml} = require(process.argv[1]); parseYaml(process.argv[2], 'bad.yaml')",
            str(release_tree / "dist/core/yaml.js"),
            text,
        )


@needs_node
def test_yaml_parser_reads_the_shipped_config_like_pyyaml(release_tree: Path) -> None:
    for name in ("config/default.yaml", "config/production.yaml.example", "pnpm-lock.yaml"):
        text = (release_tree / name).read_text()
        out = node_eval(
            "const {parseYaml} = require(process.argv[1]);"
            "process.stdout.write(JSON.stringify(parseYaml(process.argv[2], 'f')))",
            str(release_tree / "dist/core/yaml.js"),
            text,
        )
        assert json.loads(out) == yaml.safe_load(text), name


@needs_node
def test_config_files_merge_in_node_config_order(release_tree: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "default.yaml").write_text(
        "a: {from: default, keep: 1, list: [1, 2]}\nb: default\nc: default\nd: default\n"
        "e: default\nf: default\nn: {x: 1}\n"
    )
    (one / "production.yaml").write_text("a: {from: production, list: [3]}\nb: production\n")
    (one / "development.yaml").write_text("c: development-never-read\n")
    (one / "local.yaml").write_text("c: local\nd: local\nn: null\n")
    (one / "local-production.yaml").write_text("d: local-production-yaml\n")
    (one / "local-production.json").write_text('{"d": "local-production-json", "e": "json"}')
    (two / "default.yaml").write_text("f: second-dir\n")
    out = node_eval(
        "const c = require(process.argv[1]).loadConfig({NODE_ENV: 'production', "
        "NODE_CONFIG_DIR: process.argv[2]});"
        "process.stdout.write(JSON.stringify({config: c.config, sources: c.sources}))",
        str(release_tree / "dist/core/config.js"),
        f"{one}:{two}",
    )
    result = json.loads(out)
    assert result["config"] == {
        "a": {"from": "production", "keep": 1, "list": [3]},
        "b": "production",
        "c": "local",
        "d": "local-production-yaml",
        "e": "json",
        "f": "second-dir",
        "n": None,
    }
    assert [Path(s).relative_to(tmp_path).as_posix() for s in result["sources"]] == [
        "one/default.yaml",
        "one/production.yaml",
        "one/local.yaml",
        "one/local-production.json",
        "one/local-production.yaml",
        "two/default.yaml",
    ]


# ---- running the server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisDouble(socketserver.ThreadingTCPServer):
    """Speaks enough RESP for the stand-in (AUTH, SELECT, PING, SET) and records what it got."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, password: str) -> None:
        self.password = password
        self.commands: list[list[str]] = []
        self.store: dict[tuple[int, str], str] = {}
        super().__init__(("127.0.0.1", 0), RedisHandler)
        self.port = int(self.server_address[1])
        threading.Thread(target=self.serve_forever, daemon=True).start()


class RedisHandler(socketserver.StreamRequestHandler):
    server: RedisDouble

    def handle(self) -> None:
        authed, db = False, 0
        while line := self.rfile.readline():
            args = []
            for _ in range(int(line[1:])):
                size = int(self.rfile.readline()[1:])
                args.append(self.rfile.read(size + 2)[:-2].decode())
            self.server.commands.append(args)
            cmd = args[0].upper()
            if cmd == "AUTH":
                authed = args[-1] == self.server.password
                self.wfile.write(b"+OK\r\n" if authed else b"-WRONGPASS invalid password\r\n")
            elif not authed:
                self.wfile.write(b"-NOAUTH Authentication required.\r\n")
            elif cmd == "SELECT":
                db = int(args[1])
                self.wfile.write(b"+OK\r\n")
            elif cmd == "PING":
                self.wfile.write(b"+PONG\r\n")
            elif cmd == "SET":
                self.server.store[(db, args[1])] = args[2]
                self.wfile.write(b"+OK\r\n")
            else:
                self.wfile.write(b"-ERR unknown command\r\n")


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with password authentication."""

    port: int
    password: str
    home: Path

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run(
            [
                *("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"),
                *("-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def tool(self, *argv: str) -> None:
        env = {**os.environ, "PGPASSWORD": self.password}
        conn = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([argv[0], *conn, *argv[1:]], env=env, capture_output=True, check=True)


def postgres_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        version = candidate.parent.name
        trgm = Path(f"/usr/share/postgresql/{version}/extension/pg_trgm.control")
        if (candidate / "initdb").exists() and trgm.exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bindir = postgres_bin()
    if bindir is None or shutil.which("psql") is None:
        pytest.skip("no PostgreSQL server with pg_trgm/unaccent (postgresql, postgresql-contrib)")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="ptpg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres", "postgres")
    password = "super Pass 1"
    (home / "pw").write_text(password + "\n")
    if as_user:
        shutil.chown(home / "pw", "postgres", "postgres")
    port = free_port()
    subprocess.run(
        [
            *as_user,
            *(str(bindir / "initdb"), "-D", str(home / "data"), "-U", "postgres"),
            *("-A", "scram-sha-256", f"--pwfile={home / 'pw'}"),
        ],
        capture_output=True,
        check=True,
    )
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(home / "data")]
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*ctl, "-o", options, "-l", str(home / "log"), "-w", "start"],
        capture_output=True,
        check=True,
    )
    try:
        yield Cluster(port, password, home)
    finally:
        subprocess.run([*ctl, "-m", "immediate", "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisDouble]:
    server = RedisDouble(REDIS_PASSWORD)
    yield server
    server.shutdown()
    server.server_close()


@dataclass
class Instance:
    """One deployment laid out as upstream's guide says, under a temporary directory."""

    base: Path
    built: dict[str, Path]
    cluster: Cluster | None
    redis_port: int
    db_name: str = field(default_factory=lambda: f"pt_{uuid.uuid4().hex[:10]}")
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    starts: int = 0

    host = "video.standin.test"

    @property
    def config_dir(self) -> Path:
        return self.base / "config"

    @property
    def storage(self) -> Path:
        return self.base / "storage"

    @property
    def latest(self) -> Path:
        return self.base / "peertube-latest"

    def install(self, release: str, *, extensions: bool = True, **overrides: Any) -> None:
        if self.cluster is not None and not (self.base / "versions").exists():
            self.cluster.psql(f"CREATE ROLE {self.db_name} LOGIN PASSWORD 'db Pass''1'")
            self.cluster.psql(
                f"CREATE DATABASE {self.db_name} OWNER {self.db_name} TEMPLATE template0"
            )
            if extensions:
                for ext in ("pg_trgm", "unaccent"):
                    self.cluster.psql(f"CREATE EXTENSION {ext}", self.db_name)
        self.switch(release)
        self.write_config(**overrides)

    def switch(self, release: str) -> None:
        versions = self.base / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        if not (versions / f"peertube-{release}").exists():
            unpack(self.built[release], versions)
        link = self.base / "peertube-latest.new"
        link.unlink(missing_ok=True)
        link.symlink_to(versions / f"peertube-{release}")
        link.replace(self.latest)
        self.config_dir.mkdir(exist_ok=True)
        shutil.copy(self.latest / "config/default.yaml", self.config_dir / "default.yaml")

    def write_config(self, **overrides: Any) -> None:
        storage = {
            key: f"{self.storage / name}/"
            for key, name in {
                "tmp": "tmp",
                "tmp_persistent": "tmp-persistent",
                "bin": "bin",
                "avatars": "avatars",
                "web_videos": "web-videos",
                "streaming_playlists": "streaming-playlists",
                "original_video_files": "original-video-files",
                "redundancy": "redundancy",
                "logs": "logs",
                "previews": "previews",
                "thumbnails": "thumbnails",
                "storyboards": "storyboards",
                "torrents": "torrents",
                "captions": "captions",
                "cache": "cache",
                "plugins": "plugins",
                "well_known": "well-known",
                "uploads": "uploads",
                "client_overrides": "client-overrides",
            }.items()
        }
        config: dict[str, Any] = {
            "listen": {"hostname": "127.0.0.1", "port": self.port},
            "webserver": {"https": True, "hostname": self.host, "port": 443},
            "secrets": {"peertube": "ab" * 32},
            "database": {
                "hostname": "127.0.0.1",
                "port": self.cluster.port if self.cluster else free_port(),
                "name": self.db_name,
                "username": self.db_name,
                "password": "db Pass'1",
            },
            "redis": {
                "hostname": "127.0.0.1",
                "port": self.redis_port,
                "auth": REDIS_PASSWORD,
                "db": REDIS_DB,
            },
            "storage": storage,
            "admin": {"email": "admin@standin.test"},
            "instance": {"name": "Stand-in Tube"},
        }
        for dotted, value in overrides.items():
            node = config
            *parents, last = dotted.split("__")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        text = yaml.safe_dump(config, sort_keys=False)
        (self.config_dir / "production.yaml").write_text(text)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "NODE_", "PT_"))}
        return {
            **env,
            "NODE_ENV": "production",
            "NODE_CONFIG_DIR": str(self.config_dir),
            "PEERTUBE_STANDIN_ALLOW_OLD_NODE": "1",
            **extra,
        }

    def start(self, **extra: str) -> None:
        """Start `node dist/server` as the unit does; return when it answers or has exited."""
        assert NODE is not None and self.proc is None
        self.starts += 1
        self.log = self.base / f"server-{self.starts}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [NODE, "dist/server"],
                cwd=self.latest,
                env=self.env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return
            try:
                if self.get("/api/v1/ping")[1] == b"pong":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the stand-in did not answer in 60 s:\n{self.output()}")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.wait_exit() == 0

    def output(self) -> str:
        return self.log.read_text() if self.log else ""

    def request(
        self,
        path: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def get(self, path: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
        return self.request(path, headers=headers)

    def get_json(self, path: str, **headers: str) -> Any:
        status, body, _ = self.get(path, **headers)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def token(self, password: str = ROOT_PASSWORD) -> tuple[int, Any]:
        client = self.get_json("/api/v1/oauth-clients/local", Host=self.host)
        form = urllib.parse.urlencode(
            {
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
                "grant_type": "password",
                "response_type": "code",
                "username": "root",
                "password": password,
            }
        ).encode()
        status, body, _ = self.request("/api/v1/users/token", data=form)
        return status, json.loads(body)

    def upload(self, token: str, video: Path, name: str) -> tuple[int, Any]:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="channelId"\r\n\r\n1\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="videofile"; '
            f'filename="{video.name}"\r\nContent-Type: video/mp4\r\n\r\n',
        ]
        body = "".join(parts).encode() + video.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        status, answer, _ = self.request(
            "/api/v1/videos/upload",
            data=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        return status, json.loads(answer)

    def script(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        assert NODE is not None
        return subprocess.run(
            [NODE, *argv],
            cwd=self.latest,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def sql(self, query: str) -> str:
        assert self.cluster is not None
        return self.cluster.psql(query, self.db_name)


@pytest.fixture
def instance(
    tmp_path: Path, built: dict[str, Path], redis: RedisDouble, request: pytest.FixtureRequest
) -> Iterator[Instance]:
    if NODE is None:
        pytest.skip("node is not installed here")
    needs_db = "cluster" in request.fixturenames
    it = Instance(
        tmp_path / "peertube",
        built,
        request.getfixturevalue("cluster") if needs_db else None,
        redis.port,
    )
    yield it
    if it.proc is not None:
        it.proc.kill()
        it.proc.wait()


def node_version() -> tuple[int, int]:
    if NODE is None:
        return (0, 0)
    out = subprocess.run(
        [NODE, "-p", "process.versions.node"], capture_output=True, text=True, check=True
    ).stdout
    major, minor = out.split(".")[:2]
    return int(major), int(minor)


@needs_node
@pytest.mark.skipif(node_version() >= (22, 12), reason="this node is recent enough to run")
def test_server_refuses_node_older_than_22_12_like_upstream(instance: Instance) -> None:
    instance.install("v8.3.2")
    instance.start(PEERTUBE_STANDIN_ALLOW_OLD_NODE="")
    assert instance.wait_exit() == 1
    assert "Please upgrade to NodeJS 22 or NodeJS 24" in instance.output()


def test_server_refuses_an_empty_secret(instance: Instance) -> None:
    instance.install("v8.3.2", secrets__peertube="")
    instance.start()
    assert instance.wait_exit() == 1
    assert (
        "secrets.peertube is missing in config. Generate one using `openssl rand -hex 32`"
        in instance.output()
    )


def test_server_refuses_missing_keys_when_default_yaml_was_not_copied(
    instance: Instance,
) -> None:
    instance.install("v8.3.2")
    (instance.config_dir / "default.yaml").unlink()
    instance.start()
    assert instance.wait_exit() == 1
    assert "Your configuration files miss keys: " in instance.output()
    assert "oauth2.token_lifetime.access_token" in instance.output()


def test_server_refuses_an_unreachable_database(instance: Instance) -> None:
    instance.install("v8.3.2")  # no cluster: the database port has nothing behind it
    instance.start()
    assert instance.wait_exit() == 1
    out = instance.output()
    assert "error: Unable to connect to PostgreSQL database." in out
    assert "db Pass" not in out  # the password stays out of the log
    assert all(line.startswith("[stand-in peertube] ") for line in out.splitlines() if line)


def test_server_refuses_missing_extensions(instance: Instance, cluster: Cluster) -> None:
    instance.install("v8.3.2", extensions=False)
    instance.start()
    assert instance.wait_exit() == 1
    assert (
        "You need to enable pg_trgm extension in PostgreSQL. You can do so by running "
        f"'CREATE EXTENSION pg_trgm;' as a PostgreSQL super user in {instance.db_name} database."
    ) in instance.output()
    assert instance.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == "0"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"redis__auth": "wrong"}, "WRONGPASS"),
        ({"redis__port": 1}, "ECONNREFUSED"),
    ],
)
def test_server_refuses_an_unusable_redis(
    instance: Instance, cluster: Cluster, override: dict[str, Any], message: str
) -> None:
    instance.install("v8.3.2", **override)
    instance.start(PT_INITIAL_ROOT_PASSWORD=ROOT_PASSWORD)
    assert instance.wait_exit() == 1
    assert "error: Cannot connect to Redis at 127.0.0.1:" in instance.output()
    assert message in instance.output()


def test_fresh_install_serves_upstreams_endpoints(
    instance: Instance, cluster: Cluster, redis: RedisDouble
) -> None:
    instance.install("v8.3.2")
    instance.start(PT_INITIAL_ROOT_PASSWORD=ROOT_PASSWORD)
    out = instance.output()
    assert "HTTP server listening on 127.0.0.1:" in out, out
    # Like upstream: a fresh database is installed, not migrated, and the password is logged.
    assert "Creating application account." in out
    assert "Migrations finished" not in out
    assert f"User password: {ROOT_PASSWORD}" in out
    assert instance.sql('SELECT "migrationVersion" FROM application') == "1125"
    assert instance.sql("SELECT password FROM \"user\" WHERE username = 'root'").startswith(
        "scrypt$"
    )

    status, body, headers = instance.get("/api/v1/ping")
    assert (status, body, headers["X-Powered-By"]) == (200, b"pong", "PeerTube")
    config = instance.get_json("/api/v1/config")
    assert config["serverVersion"] == "8.3.2"
    assert config["instance"]["name"] == f"Stand-in Tube {MARK}"
    links = instance.get_json("/.well-known/nodeinfo")["links"]
    assert links[0]["href"] == f"https://{instance.host}/nodeinfo/2.0.json"
    nodeinfo = instance.get_json("/nodeinfo/2.0.json")
    assert nodeinfo["software"] == {"name": "peertube", "version": "8.3.2"}
    assert nodeinfo["usage"]["users"]["total"] == 1
    jrd = instance.get_json(f"/.well-known/webfinger?resource=acct:root@{instance.host}")
    assert {
        "rel": "self",
        "type": "application/activity+json",
        "href": f"https://{instance.host}/accounts/root",
    } in jrd["links"]
    assert instance.get("/.well-known/webfinger?resource=acct:nobody@video.standin.test")[0] == 404
    actor = instance.get_json("/accounts/root", Accept="application/activity+json")
    assert actor["type"] == "Person" and actor["preferredUsername"] == "root"
    assert actor["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert instance.get("/accounts/root")[2]["Content-Type"].startswith("text/html")

    # OAuth as upstream: the local client only for the right Host, then the password grant.
    status, body, _ = instance.get("/api/v1/oauth-clients/local", Host="evil.test")
    assert status == 403 and b"Getting client tokens for host evil.test is forbidden" in body
    assert instance.token("wrong password")[0] == 400
    status, token = instance.token()
    assert status == 200 and token["token_type"] == "Bearer", token
    me = instance.get_json("/api/v1/users/me", Authorization=f"Bearer {token['access_token']}")
    assert me["username"] == "root" and me["email"] == "admin@standin.test"
    assert me["videoChannels"][0]["name"] == "root_channel"
    assert instance.get("/api/v1/users/me", Authorization="Bearer nope")[0] == 401

    # Redis: AUTH with redis.auth, SELECT redis.db, PING; the heartbeat lands in that database.
    assert ["AUTH", REDIS_PASSWORD] in redis.commands
    assert ["SELECT", str(REDIS_DB)] in redis.commands
    assert json.loads(redis.store[(REDIS_DB, "standin:peertube:heartbeat")])["version"] == "8.3.2"

    log = (instance.storage / "logs/peertube.log").read_text()
    assert "HTTP server listening on" in log
    instance.stop()
    assert "Received SIGTERM, stopping." in instance.output()

    # A second start: nothing to install, no password in the log.
    instance.start()
    assert "Creating the administrator." not in instance.output()
    assert "Begin migrations." not in instance.output()


def test_random_root_password_is_logged_and_works(instance: Instance, cluster: Cluster) -> None:
    instance.install("v8.2.4")
    instance.start()
    found = re.search(r"info: User password: ([a-z]{16})$", instance.output(), re.MULTILINE)
    assert found, instance.output()
    assert instance.token(found.group(1))[0] == 200
    assert instance.get_json("/api/v1/config")["serverVersion"] == "8.2.4"


def test_invalid_initial_root_password_is_refused(instance: Instance, cluster: Cluster) -> None:
    instance.install("v8.3.2")
    instance.start(PT_INITIAL_ROOT_PASSWORD="short")
    assert instance.wait_exit() == 1
    assert "Cannot install application. PT_INITIAL_ROOT_PASSWORD is not a valid password" in (
        instance.output()
    )
    assert "short" not in instance.output().split("PT_INITIAL_ROOT_PASSWORD")[-1]


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg is not installed here (apt-get install ffmpeg)")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"),
            *("-f", "lavfi", "-i", "sine=frequency=440", "-t", "3"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)),
        ],
        check=True,
    )
    return path


def test_upload_is_transcoded_to_hls_with_ffmpeg(
    instance: Instance, cluster: Cluster, sample_video: Path
) -> None:
    instance.install("v8.3.2")
    instance.start(PT_INITIAL_ROOT_PASSWORD=ROOT_PASSWORD)
    token = instance.token()[1]["access_token"]
    assert instance.upload("nope", sample_video, "x")[0] == 401
    assert instance.upload(token, sample_video, "x")[0] == 400  # name too short
    status, answer = instance.upload(token, sample_video, "Café crème démo")
    assert status == 200, answer
    video_uuid = answer["video"]["uuid"]

    hls = instance.storage / "streaming-playlists/hls" / video_uuid
    files = sorted(p.name for p in hls.iterdir())
    assert files[:2] == ["240-000.ts", "240.m3u8"] and "master.m3u8" in files
    assert "240.m3u8" in (hls / "master.m3u8").read_text()
    assert list((instance.storage / "tmp").iterdir()) == []  # the original is gone

    video = instance.get_json(f"/api/v1/videos/{video_uuid}")
    assert video["state"] == {"id": 1, "label": "Published"}
    assert video["duration"] == 3
    playlist = video["streamingPlaylists"][0]
    assert playlist["playlistUrl"] == (
        f"https://{instance.host}/static/streaming-playlists/hls/{video_uuid}/master.m3u8"
    )
    assert playlist["files"][0]["resolution"]["id"] == 240
    assert playlist["storageBytes"] == sum(p.stat().st_size for p in hls.iterdir())
    assert instance.get_json(f"/api/v1/videos/{answer['video']['shortUUID']}")["id"] == video["id"]
    status, body, headers = instance.get(
        f"/static/streaming-playlists/hls/{video_uuid}/master.m3u8"
    )
    assert status == 200 and body == (hls / "master.m3u8").read_bytes()
    assert headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert instance.get(f"/static/streaming-playlists/hls/{video_uuid}/../../x")[0] == 404
    listed = instance.get_json("/api/v1/videos")
    assert listed["total"] == 1 and listed["data"][0]["uuid"] == video_uuid
    # pg_trgm and unaccent at work: no accents, a typo.
    found = instance.get_json("/api/v1/search/videos?search=creme%20demmo")
    assert [v["uuid"] for v in found["data"]] == [video_uuid]
    assert instance.get_json("/api/v1/search/videos?search=zzzz")["total"] == 0


def seed_playlist(instance: Instance) -> str:
    """A published video with HLS files on disk, without ffmpeg (for the upgrade test)."""
    video_uuid = str(uuid.uuid4())
    hls = instance.storage / "streaming-playlists/hls" / video_uuid
    hls.mkdir(parents=True)
    (hls / "master.m3u8").write_text("#EXTM3U\n240.m3u8\n")
    (hls / "240.m3u8").write_text("#EXTM3U\n240-000.ts\n")
    (hls / "240-000.ts").write_bytes(b"\0" * 1000)
    url = f"https://{instance.host}/static/streaming-playlists/hls/{video_uuid}/master.m3u8"
    instance.sql(
        'INSERT INTO video (uuid, name, "channelId", state, "publishedAt") '  # noqa: S608 - test data
        f"VALUES ('{video_uuid}', 'Seeded video', 1, 1, now());"
        'INSERT INTO "videoStreamingPlaylist" ("playlistFilename", "playlistUrl", "videoId") '
        f"SELECT 'master.m3u8', '{url}', id FROM video WHERE uuid = '{video_uuid}'"
    )
    return video_uuid


def test_upgrade_manual_script_reset_password_and_rollback(
    instance: Instance, cluster: Cluster, tmp_path: Path
) -> None:
    instance.install("v8.2.4")
    instance.start(PT_INITIAL_ROOT_PASSWORD=ROOT_PASSWORD)
    assert instance.sql('SELECT "migrationVersion" FROM application') == "1077"
    video_uuid = seed_playlist(instance)
    instance.stop()

    # Upgrade as upstream's guide does: dump, new release, link, restart.
    dump_824 = tmp_path / "824.dump"
    cluster.tool("pg_dump", "-Fc", "-f", str(dump_824), instance.db_name)
    instance.switch("v8.3.2")
    instance.start()
    out = instance.output()
    assert "Executing 1125-standin-streaming-playlist-storage-bytes.js migration script." in out
    assert "Migrations finished. New migration version schema: 1125" in out
    assert instance.get_json("/api/v1/config")["serverVersion"] == "8.3.2"
    playlist = instance.get_json(f"/api/v1/videos/{video_uuid}")["streamingPlaylists"][0]
    assert playlist["storageBytes"] is None

    # The 8.3 manual script backfills, once.
    done = instance.script("dist/scripts/migrations/peertube-8.3.js")
    assert done.returncode == 0, done.stderr
    assert "peertube-8.3: backfilled 1 streaming playlists (0 already done)." in done.stdout
    playlist = instance.get_json(f"/api/v1/videos/{video_uuid}")["streamingPlaylists"][0]
    hls = instance.storage / "streaming-playlists/hls" / video_uuid
    assert playlist["storageBytes"] == sum(p.stat().st_size for p in hls.iterdir())
    again = instance.script("dist/scripts/migrations/peertube-8.3.js")
    assert "backfilled 0 streaming playlists (1 already done)." in again.stdout

    # reset-password reads one line from standard input.
    reset = instance.script("dist/scripts/reset-password.js", "-u", "root", stdin="new-Pass 22\n")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout == "New password?\nUser password updated.\n"
    assert instance.token()[0] == 400 and instance.token("new-Pass 22")[0] == 200
    bad = instance.script("dist/scripts/reset-password.js", "-u", "root", stdin="short\n")
    assert (bad.returncode, bad.stderr) == (1, "New password is invalid.\n")
    unknown = instance.script("dist/scripts/reset-password.js", "-u", "bob", stdin="long-enough\n")
    assert (unknown.returncode, unknown.stderr) == (1, "Unknown user.\n")
    instance.stop()

    # The broken release migrates further, then dies at every start.
    dump_832 = tmp_path / "832.dump"
    cluster.tool("pg_dump", "-Fc", "-f", str(dump_832), instance.db_name)
    instance.switch("v8.3.3-broken")
    instance.start()
    assert instance.wait_exit() == 1
    assert "Migrations finished. New migration version schema: 1130" in instance.output()
    assert "stand-in v8.3.3 is broken on purpose" in instance.output()
    assert instance.sql('SELECT "migrationVersion" FROM application') == "1130"
    assert instance.sql("SELECT count(*) FROM pg_attribute WHERE attname = 'v833Marker'") == "1"

    # Back to v8.3.2 without the dump: refused; after pg_restore -c -C: serving again.
    instance.switch("v8.3.2")
    instance.start()
    assert instance.wait_exit() == 1
    assert "Database schema version 1130 is newer than this release's (1125)" in (instance.output())
    cluster.tool("pg_restore", "-c", "-C", "-d", "postgres", str(dump_832))
    instance.start()
    assert instance.get_json("/api/v1/config")["serverVersion"] == "8.3.2"
    assert instance.sql('SELECT "migrationVersion" FROM application') == "1125"
    assert instance.sql("SELECT count(*) FROM pg_attribute WHERE attname = 'v833Marker'") == "0"
    assert instance.get_json(f"/api/v1/videos/{video_uuid}")["name"] == "Seeded video"
    assert instance.token("new-Pass 22")[0] == 200


# ---- pnpm: the lock installs offline ------------------------------------------------------------


def pnpm_tarball(version: str) -> Path:
    """pnpm's npm tarball from .work/cache/pnpm, packed from the npm registry when missing."""
    tarball = PNPM_CACHE / f"pnpm-{version}.tgz"
    if tarball.exists():
        return tarball
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed here, and no cached pnpm tarball")
    PNPM_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "pack", f"pnpm@{version}", "--pack-destination", str(PNPM_CACHE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0 or not tarball.exists():
        pytest.skip(f"cannot get pnpm {version} from the npm registry: {done.stderr[-300:]}")
    return tarball


@needs_node
def test_pnpm_install_frozen_lockfile_works_offline(built: dict[str, Path], tmp_path: Path) -> None:
    release = unpack(built["v8.3.2"], tmp_path)
    manifest = json.loads((release / "package.json").read_text())
    version, sha512 = manifest["packageManager"].removeprefix("pnpm@").split("+sha512.")
    tarball = pnpm_tarball(version)
    assert hashlib.sha512(tarball.read_bytes()).hexdigest() == sha512
    pnpm_dir = tmp_path / "pnpm"
    pnpm_dir.mkdir()
    subprocess.run(["tar", "-xzf", str(tarball), "-C", str(pnpm_dir)], check=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pnpm").symlink_to(pnpm_dir / "package/bin/pnpm.cjs")
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        # Nothing listens there: any attempt to reach a registry fails at once.
        "npm_config_registry": "http://127.0.0.1:9/",
    }
    lock = (release / "pnpm-lock.yaml").read_bytes()
    done = subprocess.run(
        ["pnpm", "install", "--prod", "--frozen-lockfile"],
        cwd=release,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (release / "node_modules").is_dir()
    assert (release / "pnpm-lock.yaml").read_bytes() == lock
    if shutil.which("npm"):  # upstream's form
        done = subprocess.run(
            ["npm", "run", "install-node-dependencies", "--", "--production"],
            cwd=release,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
