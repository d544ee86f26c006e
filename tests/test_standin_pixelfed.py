"""The TEST STAND-IN Pixelfed release archives (tests/standin/pixelfed/): build and contract.

Builds the archives into a temporary directory with tests/standin/build_pixelfed_standin.py and
checks what the pixelfed role relies on: one `pixelfed-<release>/` top directory, upstream's tree
(artisan, public/index.php, composer.json and an empty composer.lock whose content-hash is
Composer's, .env.example with upstream's keys, storage/ and bootstrap/cache/), the migrations
each release adds, the version each reports, the "not Pixelfed" markers, byte-identical
rebuilds. PHP is not installed on the machines that run these tests; when `php` is on PATH the
PHP files are linted and the .env parser and config cache are exercised, otherwise those tests
are skipped. tests/standin/lab_check_pixelfed_standin.sh runs the releases for real on a
Debian 13 lab host (php-fpm, PostgreSQL, Redis, nginx, systemd, Debian's composer).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "tests" / "standin" / "build_pixelfed_standin.py"
SOURCE = ROOT / "tests" / "standin" / "pixelfed"
LAB_CHECK = ROOT / "tests" / "standin" / "lab_check_pixelfed_standin.sh"

RELEASES = {"v0.14.3": "0.14.3", "v0.14.4": "0.14.4", "v0.14.5-broken": "0.14.5"}
MIGRATIONS = {
    "v0.14.3": ["2026_01_01_000000_standin_create_pixelfed_tables.php"],
    "v0.14.4": [
        "2026_01_01_000000_standin_create_pixelfed_tables.php",
        "2026_09_30_000000_standin_add_sha256_to_media_table.php",
    ],
    "v0.14.5-broken": [
        "2026_01_01_000000_standin_create_pixelfed_tables.php",
        "2026_09_30_000000_standin_add_sha256_to_media_table.php",
        "2026_12_01_000000_standin_add_v0145_marker_to_users_table.php",
    ],
}
RELEASE_FILES = [
    "artisan",
    "public/index.php",
    "composer.json",
    "composer.lock",
    ".env.example",
    "STANDIN-NOT-PIXELFED.txt",
    "bootstrap/app.php",
    "bootstrap/cache/.gitignore",
    "config/app.php",
    "config/database.php",
    "config/pixelfed.php",
    "config/trustedproxy.php",
    "routes/web.php",
    "routes/api.php",
    "storage/app/public/.gitignore",
    "storage/app/cities.json",
    "storage/framework/cache/.gitignore",
    "storage/framework/sessions/.gitignore",
    "storage/framework/views/.gitignore",
    "storage/logs/.gitignore",
]
ENV_KEYS = [
    "APP_NAME",
    "APP_ENV",
    "APP_KEY",
    "APP_DEBUG",
    "APP_URL",
    "APP_DOMAIN",
    "ADMIN_DOMAIN",
    "SESSION_DOMAIN",
    "TRUST_PROXIES",
    "DB_CONNECTION",
    "DB_HOST",
    "DB_PORT",
    "DB_DATABASE",
    "DB_USERNAME",
    "DB_PASSWORD",
    "REDIS_HOST",
    "REDIS_PASSWORD",
    "REDIS_PORT",
    "MAIL_DRIVER",
    "MAIL_HOST",
    "MAIL_FROM_ADDRESS",
    "ACTIVITY_PUB",
    "AP_REMOTE_FOLLOW",
    "AP_INBOX",
    "AP_OUTBOX",
    "AP_SHAREDINBOX",
    "OPEN_REGISTRATION",
    "ENFORCE_EMAIL_VERIFICATION",
    "PF_MAX_USERS",
    "OAUTH_ENABLED",
    "ENABLE_CONFIG_CACHE",
    "PF_ENABLE_CLOUD",
    "FILESYSTEM_CLOUD",
]
PHP = shutil.which("php")
needs_php = pytest.mark.skipif(PHP is None, reason="php is not installed here (see the lab check)")


def load_builder() -> ModuleType:
    # As when it runs as a script: its directory holds the builders' shared module.
    if str(BUILDER.parent) not in sys.path:
        sys.path.insert(0, str(BUILDER.parent))
    spec = importlib.util.spec_from_file_location("build_pixelfed_standin", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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
    paths = build(tmp_path_factory.mktemp("pf-standin"), "all")
    return {p.name.removeprefix("pixelfed-standin-").removesuffix(".tar.gz"): p for p in paths}


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(archive: Path, name: str) -> str:
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read().decode()


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (top,) = list(into.iterdir())
    return top


# ---- the builder and the archives --------------------------------------------------------------


def test_builder_prints_archives_and_writes_checksums(built: dict[str, Path]) -> None:
    assert list(built) == list(RELEASES)
    for release, archive in built.items():
        assert archive.name == f"pixelfed-standin-{release}.tar.gz"
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert archive.with_name(f"{archive.name}.sha256").read_text() == (
            f"{digest}  {archive.name}\n"
        )


def test_builds_are_byte_identical(built: dict[str, Path], tmp_path: Path) -> None:
    again = build(tmp_path, "v0.14.4", "0.14.3", "v0.14.5-broken")
    for path in again:
        release = path.name.removeprefix("pixelfed-standin-").removesuffix(".tar.gz")
        assert path.read_bytes() == built[release].read_bytes(), release


def test_gzip_header_has_no_name_or_time(built: dict[str, Path]) -> None:
    header = built["v0.14.4"].read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0  # no FNAME
    assert header[4:8] == b"\0\0\0\0"  # MTIME 0


def test_unknown_release_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(tmp_path), "v0.12.6"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "unknown stand-in release 'v0.12.6'" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("release", RELEASES)
def test_one_top_directory_fixed_owner_time_modes(built: dict[str, Path], release: str) -> None:
    entries = members(built[release])
    top = f"pixelfed-{release}"
    assert {name.split("/")[0] for name in entries} == {top}
    for name, info in entries.items():
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", ""), name
        assert info.mtime == 1767225600, name
        if info.isdir():
            assert info.mode == 0o755, name
        else:
            assert info.isfile(), name
            expected = 0o755 if name == f"{top}/artisan" else 0o644
            assert info.mode == expected, name
    assert list(entries) == sorted(entries)


@pytest.mark.parametrize("release", RELEASES)
def test_upstream_tree_and_nothing_that_must_not_ship(built: dict[str, Path], release: str) -> None:
    top = f"pixelfed-{release}"
    names = {n.removeprefix(f"{top}/") for n in members(built[release])}
    for path in RELEASE_FILES:
        assert path in names, path
    for never in ("vendor", ".env", "public/storage", "bootstrap/cache/config.php"):
        assert never not in names and not any(n.startswith(f"{never}/") for n in names), never
    assert read(built[release], f"{top}/artisan").startswith("#!/usr/bin/env php\n")


@pytest.mark.parametrize("release", RELEASES)
def test_version_markers_and_migrations(built: dict[str, Path], release: str) -> None:
    top = f"pixelfed-{release}"
    version = RELEASES[release]
    assert f"'version' => '{version}'," in read(built[release], f"{top}/config/pixelfed.php")
    marker = read(built[release], f"{top}/STANDIN-NOT-PIXELFED.txt")
    assert marker.startswith("THIS IS NOT PIXELFED.")
    assert f"Pixelfed {version} release ({release})" in marker
    migrations = sorted(
        n.rsplit("/", 1)[1]
        for n in members(built[release])
        if n.startswith(f"{top}/database/migrations/") and n.endswith(".php")
    )
    assert migrations == MIGRATIONS[release]
    broken = "BROKEN = true;" in read(built[release], f"{top}/app/Standin/Release.php")
    assert broken == release.endswith("-broken")


def test_v0144_code_needs_its_migration(built: dict[str, Path]) -> None:
    def columns(release: str) -> str:
        return read(built[release], f"pixelfed-{release}/app/Standin/Release.php")

    assert "'sha256'" not in columns("v0.14.3")
    assert "'sha256'" in columns("v0.14.4")


def test_composer_json_and_empty_lock(built: dict[str, Path]) -> None:
    builder = load_builder()
    top = "pixelfed-v0.14.4"
    composer = json.loads(read(built["v0.14.4"], f"{top}/composer.json"))
    lock = json.loads(read(built["v0.14.4"], f"{top}/composer.lock"))
    assert composer["require"]["php"] == "^8.3|^8.4"
    assert "Laravel" not in json.dumps(composer) and "NOT Pixelfed" in composer["description"]
    assert lock["packages"] == [] and lock["packages-dev"] == []
    assert lock["platform"] == composer["require"]
    assert lock["content-hash"] == builder.content_hash(
        read(built["v0.14.4"], f"{top}/composer.json").encode()
    )


def test_content_hash_matches_composers_algorithm() -> None:
    # PHP: md5(json_encode(["name" => "a/b", "require" => ["php" => "^8.3"]]))
    builder = load_builder()
    text = b'{"require": {"php": "^8.3"}, "name": "a/b", "type": "project"}'
    expected = hashlib.md5(b'{"name":"a\\/b","require":{"php":"^8.3"}}').hexdigest()  # noqa: S324
    assert builder.content_hash(text) == expected


def test_env_example_has_upstreams_keys(built: dict[str, Path]) -> None:
    text = read(built["v0.14.4"], "pixelfed-v0.14.4/.env.example")
    keys = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M))
    missing = [k for k in ENV_KEYS if k not in keys]
    assert not missing
    assert re.search(r"^APP_KEY=$", text, re.M)  # key:generate fills it
    assert re.search(r"^TRUST_PROXIES=$", text, re.M)  # nothing trusted since v0.12.8


def test_every_env_key_the_config_reads_is_documented() -> None:
    readme = (SOURCE / "README.md").read_text()
    config = "".join(p.read_text() for p in sorted((SOURCE / "release" / "config").glob("*.php")))
    for key in sorted(set(re.findall(r"App::env\('([A-Z0-9_]+)'", config))):
        assert f"`{key}`" in readme, key


def test_not_pixelfed_everywhere() -> None:
    for path in sorted((SOURCE / "release").rglob("*.php")):
        assert "not pixelfed" in path.read_text().lower(), path
    http = (SOURCE / "release" / "app" / "Standin" / "Http.php").read_text()
    assert "(fedictl test stand-in, not Pixelfed)" in http
    app = (SOURCE / "release" / "app" / "Standin" / "App.php").read_text()
    assert "[stand-in pixelfed]" in app


def test_debian_packages_are_trixie_php84() -> None:
    packages = (SOURCE / "debian-packages.txt").read_text().split()
    assert packages == sorted(packages)
    assert "composer" in packages and "php8.4-fpm" in packages and "php8.4-cli" in packages
    for pkg in packages:
        assert pkg == "composer" or pkg.startswith("php8.4-"), pkg


def test_lab_check_is_bash_clean() -> None:
    result = subprocess.run(["bash", "-n", str(LAB_CHECK)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---- PHP, where it exists ----------------------------------------------------------------------


@needs_php
@pytest.mark.parametrize("release", RELEASES)
def test_php_files_lint(built: dict[str, Path], release: str, tmp_path: Path) -> None:
    top = unpack(built[release], tmp_path)
    for path in [top / "artisan", *sorted(top.rglob("*.php"))]:
        result = subprocess.run([str(PHP), "-l", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_php
def test_dotenv_parser(built: dict[str, Path], tmp_path: Path) -> None:
    top = unpack(built["v0.14.4"], tmp_path / "release")
    env = tmp_path / "in.env"
    env.write_text(
        'A=plain # comment\nB="double ${A} \\"q\\""\nC=\'single ${A}\'\nexport D=x\n#E=no\n'
    )
    code = (
        "require $argv[1];"
        "echo json_encode(App\\Standin\\App::parseDotenv(file_get_contents($argv[2])));"
    )
    result = subprocess.run(
        [str(PHP), "-r", code, "--", str(top / "app/Standin/App.php"), str(env)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "A": "plain",
        "B": 'double plain "q"',
        "C": "single ${A}",
        "D": "x",
    }
