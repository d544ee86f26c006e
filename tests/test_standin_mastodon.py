"""The TEST STAND-IN Mastodon release archives (tests/standin/): structure, versions, determinism.

Builds the archives into tmp_path with tests/standin/build_mastodon_standin.py (no lab host) and
checks what the mastodon role relies on: the release tree at the archive root, upstream's entry
points (executable), the version inside, the stand-in marker, no public/system, migrations per
release, and byte-identical rebuilds. The lab run is described in tests/standin/README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "tests" / "standin" / "build_mastodon_standin.py"
PACKAGES = ROOT / "tests" / "standin" / "mastodon" / "debian-packages.txt"

RELEASES = {
    "v4.5.13": "4.5.13",
    "v4.5.14": "4.5.14",
    "v4.5.15-broken": "4.5.15",
    "v4.6.9": "4.6.9",
    "v4.7.6": "4.7.6",
    "v4.7.7-broken": "4.7.7",
}
BROKEN = {"v4.5.15-broken": "4.5.15", "v4.7.7-broken": "4.7.7"}
MIGRATIONS = {
    "v4.5.13": (
        ["20250901000000_create_standin_tables.rb"],
        ["20250901000100_add_index_accounts_on_username_and_domain_lower.rb"],
    ),
    "v4.5.14": (
        ["20250901000000_create_standin_tables.rb", "20251201000000_add_language_to_statuses.rb"],
        [
            "20250901000100_add_index_accounts_on_username_and_domain_lower.rb",
            "20251201000100_add_index_statuses_on_language.rb",
        ],
    ),
    "v4.5.15-broken": (
        [
            "20250901000000_create_standin_tables.rb",
            "20251201000000_add_language_to_statuses.rb",
            "20260301000000_add_discoverable_to_accounts.rb",
        ],
        [
            "20250901000100_add_index_accounts_on_username_and_domain_lower.rb",
            "20251201000100_add_index_statuses_on_language.rb",
            "20260301000100_backfill_accounts_discoverable.rb",
        ],
    ),
    "v4.6.9": (
        [
            "20250901000000_create_standin_tables.rb",
            "20251201000000_add_language_to_statuses.rb",
            "20260601000000_add_indexable_to_accounts.rb",
        ],
        [
            "20250901000100_add_index_accounts_on_username_and_domain_lower.rb",
            "20251201000100_add_index_statuses_on_language.rb",
        ],
    ),
    "v4.7.6": (
        [
            "20250901000000_create_standin_tables.rb",
            "20251201000000_add_language_to_statuses.rb",
            "20260601000000_add_indexable_to_accounts.rb",
            "20260801000000_create_keypairs.rb",
        ],
        [
            "20250901000100_add_index_accounts_on_username_and_domain_lower.rb",
            "20251201000100_add_index_statuses_on_language.rb",
            "20260801000100_backfill_keypairs.rb",
        ],
    ),
    "v4.7.7-broken": (
        [
            "20250901000000_create_standin_tables.rb",
            "20251201000000_add_language_to_statuses.rb",
            "20260601000000_add_indexable_to_accounts.rb",
            "20260801000000_create_keypairs.rb",
            "20261201000000_add_rotated_at_to_keypairs.rb",
        ],
        [
            "20250901000100_add_index_accounts_on_username_and_domain_lower.rb",
            "20251201000100_add_index_statuses_on_language.rb",
            "20260801000100_backfill_keypairs.rb",
        ],
    ),
}
# What each line's release asks for: .ruby-version, the Gemfile's Ruby range, engines.node, and
# the packageManager (4.6 onwards). 4.6 -> 4.7 changes Ruby: the role must restart the web fully.
REQUIREMENTS = {
    "4.5": ("3.4.7", "ruby '>= 3.2.0', '< 3.5.0'", ">=20", None),
    "4.6": ("4.0.5", "ruby '>= 3.3.0', '< 4.1.0'", ">=22", "yarn@4.16.0"),
    "4.7": ("4.0.10", "ruby '>= 3.3.0', '< 4.1.0'", ">=22", "yarn@4.18.1"),
}
ROOT_FILES = [
    "Gemfile",
    "Gemfile.lock",
    ".bundle/config",
    ".ruby-version",
    "package.json",
    "config.ru",
    "config/puma.rb",
    "config/sidekiq.yml",
    "bin/rails",
    "bin/tootctl",
    "streaming/index.js",
    "streaming/package.json",
    "lib/mastodon/version.rb",
    "public/500.html",
    "public/robots.txt",
    "public/packs/manifest.json",
    "STANDIN-NOT-MASTODON.txt",
]


def build(out: Path, *versions: str) -> list[Path]:
    result = subprocess.run(
        [sys.executable, str(BUILDER), *versions, "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [Path(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = build(tmp_path_factory.mktemp("standin"), "all")
    return {
        path.name.removeprefix("mastodon-standin-").removesuffix(".tar.gz"): path for path in paths
    }


def members(archive: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return {info.name: info for info in tar.getmembers()}


def read(archive: Path, name: str) -> str:
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None, name
        return extracted.read().decode()


def test_builder_prints_one_archive_per_release_with_its_checksum(
    archives: dict[str, Path],
) -> None:
    assert sorted(archives) == sorted(RELEASES)
    for release, archive in archives.items():
        assert archive.name == f"mastodon-standin-{release}.tar.gz"
        assert "standin" in archive.name
        checksum = archive.with_name(f"{archive.name}.sha256").read_text()
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert checksum == f"{digest}  {archive.name}\n"


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_release_tree_is_at_the_archive_root(archives: dict[str, Path], release: str) -> None:
    entries = members(archives[release])
    for name in ROOT_FILES:
        assert name in entries, name
    for name, info in entries.items():
        assert not name.startswith(("/", "./", "..")), name
        assert info.uid == 0 and info.gid == 0, name
        assert info.mtime == entries["Gemfile"].mtime, name
    tops = {name.split("/")[0] for name in entries}
    assert "mastodon" not in tops and len(tops) > 10  # no leading directory


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_nothing_deployment_owned_is_shipped(archives: dict[str, Path], release: str) -> None:
    names = members(archives[release])
    for name in names:
        assert name != "public/system" and not name.startswith("public/system/"), name
        assert not name.startswith(("vendor/bundle", "node_modules")), name
        assert ".env.production" not in name, name
    assert names["tmp"].isdir() and names["log"].isdir()
    assert [name for name in names if name.startswith("tmp/")] == []
    # Bundler writes the lock on first use; it lands in tmp/, the only place that must be writable.
    lock = names["Gemfile.lock"]
    assert lock.issym() and lock.linkname == "tmp/Gemfile.lock"


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_entry_points_are_executable_and_the_rest_is_not(
    archives: dict[str, Path], release: str
) -> None:
    entries = members(archives[release])
    for name in ("bin/rails", "bin/tootctl"):
        assert entries[name].mode == 0o755, name
        assert read(archives[release], name).startswith("#!/usr/bin/env ruby\n")
    for name, info in entries.items():
        if info.isfile() and not name.startswith("bin/"):
            assert info.mode == 0o644, name
        if info.isdir():
            assert info.mode == 0o755, name


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_version_and_stand_in_marker_inside(archives: dict[str, Path], release: str) -> None:
    archive = archives[release]
    version = RELEASES[release]
    assert f"STANDIN_VERSION = '{version}'" in read(archive, "lib/mastodon/version.rb")
    marker = read(archive, "STANDIN-NOT-MASTODON.txt")
    assert marker.startswith("THIS IS NOT MASTODON.")
    assert f"Mastodon {version} release ({release})" in marker
    assert "(fedictl test stand-in, not Mastodon)" in read(archive, "lib/standin/web.rb")


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_runtime_requirements_match_the_release_line(
    archives: dict[str, Path], release: str
) -> None:
    archive = archives[release]
    line = ".".join(RELEASES[release].split(".")[:2])
    ruby_version, gemfile_ruby, node, package_manager = REQUIREMENTS[line]
    assert read(archive, ".ruby-version") == f"{ruby_version}\n"
    assert gemfile_ruby in read(archive, "Gemfile")
    package = json.loads(read(archive, "package.json"))
    assert package["engines"] == {"node": node}
    assert package.get("packageManager") == package_manager
    assert json.loads(read(archive, "streaming/package.json"))["engines"] == {"node": node}
    bundle_config = read(archive, ".bundle/config")
    assert "DEPLOYMENT" not in bundle_config and "PATH" not in bundle_config
    gems = re.findall(r"^gem '([^']+)'", read(archive, "Gemfile"), re.MULTILINE)
    assert sorted(gems) == ["dotenv", "pg", "puma", "rack", "redis-client", "sidekiq"]


def test_debian_packages_cover_the_gemfile() -> None:
    packages = PACKAGES.read_text().split()
    assert packages == sorted(set(packages))
    for package in ("ruby", "bundler", "puma", "ruby-rack", "ruby-pg", "ruby-dotenv"):
        assert package in packages
    for package in ("ruby-redis-client", "ruby-sidekiq", "nodejs"):
        assert package in packages


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_migrations_accumulate_per_release(archives: dict[str, Path], release: str) -> None:
    names = members(archives[release])
    pre, post = MIGRATIONS[release]

    def listed(directory: str) -> list[str]:
        return sorted(n.removeprefix(directory) for n in names if n.startswith(directory))

    assert listed("db/migrate/") == pre
    assert listed("db/post_migrate/") == post


def test_only_the_broken_release_fails_at_boot(archives: dict[str, Path]) -> None:
    for release, archive in archives.items():
        config_ru = read(archive, "config.ru")
        version = BROKEN.get(release, RELEASES[release])
        broken = f"raise 'stand-in v{version} is broken on purpose'" in config_ru
        assert broken == (release in BROKEN), release
        assert "require_relative 'config/environment'" in config_ru


def test_compiled_assets_match_their_manifest(archives: dict[str, Path]) -> None:
    archive = archives["v4.5.13"]
    names = members(archive)
    manifest = json.loads(read(archive, "public/packs/manifest.json"))
    assert manifest == {
        "application.css": "/packs/css/application.css",
        "application.js": "/packs/js/application.js",
    }
    for path in manifest.values():
        assert f"public{path}" in names
    assert any(name.startswith("public/assets/") and names[name].isfile() for name in names)


def test_building_twice_gives_identical_archives(tmp_path: Path) -> None:
    first = build(tmp_path / "one", *RELEASES)
    second = build(tmp_path / "two", "all")
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
        assert (a.parent / f"{a.name}.sha256").read_bytes() == (
            b.parent / f"{b.name}.sha256"
        ).read_bytes()


def test_unknown_release_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BUILDER), "v9.9.9", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "unknown stand-in release 'v9.9.9'" in result.stderr
    assert list(tmp_path.iterdir()) == []
