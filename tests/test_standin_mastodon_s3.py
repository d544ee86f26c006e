"""The TEST STAND-IN Mastodon release's media uploads and S3 storage (tests/standin/, not Mastodon).

Without a lab host: every release archive ships the media code (lib/standin/media.rb, s3.rb,
access_tokens.rb), labelled as the stand-in, needing nothing beyond Ruby's standard library and the
gems the Gemfile already names (so debian-packages.txt stays complete), with the routes and the
`tootctl standin token` command wired in. The machine running these tests has no Ruby: the Ruby code
runs in the lab check, tests/standin/lab_check_mastodon_s3.sh, which the `lab` test below runs on
a fresh lab host (sa-s3). What it proves is in tests/standin/README.md, "Media and object storage".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from fedictl.cli import cli
from fedictl.lab import OWNER_ENV

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin"
BUILDER = STANDIN / "build_mastodon_standin.py"
RELEASE = STANDIN / "mastodon" / "release"
LAB_CHECK = STANDIN / "lab_check_mastodon_s3.sh"
MEDIA_FILES = ("lib/standin/media.rb", "lib/standin/s3.rb", "lib/standin/access_tokens.rb")
# What the media code may require: Ruby's standard library (default gems, on every Ruby) and the
# gems the Gemfile names; anything else would need a Debian package and a Gemfile line.
STDLIB = {
    "digest",
    "fileutils",
    "json",
    "net/http",
    "openssl",
    "optparse",
    "securerandom",
    "stringio",
    "uri",
}
LAB_HOST = "sa-s3"
CAN_BOOT = os.geteuid() == 0 and all(
    shutil.which(t) for t in ("systemd-nspawn", "debootstrap", "nft", "apt-cacher-ng")
)


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("standin-s3")
    result = subprocess.run(
        [sys.executable, str(BUILDER), "all", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    paths = [Path(line) for line in result.stdout.splitlines()]
    return {p.name.removeprefix("mastodon-standin-").removesuffix(".tar.gz"): p for p in paths}


def ruby_source(name: str) -> str:
    return (RELEASE / name).read_text()


def gemfile_gems() -> set[str]:
    return set(re.findall(r"^gem '([^']+)'", (RELEASE / "Gemfile").read_text(), re.M))


def test_every_release_ships_the_media_code_as_in_the_tree(archives: dict[str, Path]) -> None:
    assert archives, "the builder made no archive"
    for release, archive in archives.items():
        with tarfile.open(archive) as tar:
            for name in MEDIA_FILES:
                member = tar.getmember(name)
                assert member.mode == 0o644, (release, name, oct(member.mode))
                extracted = tar.extractfile(member)
                assert extracted is not None
                assert extracted.read() == (RELEASE / name).read_bytes(), (release, name)


@pytest.mark.parametrize("name", MEDIA_FILES)
def test_the_media_code_says_it_is_the_stand_in(name: str) -> None:
    assert "fedictl test stand-in, not Mastodon" in ruby_source(name)


@pytest.mark.parametrize("name", [*MEDIA_FILES, "lib/standin/web.rb", "lib/standin/tootctl.rb"])
def test_the_media_code_needs_no_new_package(name: str) -> None:
    required = set(re.findall(r"^\s*require '([^']+)'", ruby_source(name), re.M))
    assert required <= STDLIB | gemfile_gems(), required - STDLIB - gemfile_gems()


def test_the_web_app_routes_uploads_and_reads() -> None:
    web = ruby_source("lib/standin/web.rb")
    post_routes = web[web.index("POST_ROUTES = [") :]
    post_routes = post_routes[: post_routes.index("].freeze")]
    assert r"[%r{\A/api/v2/media\z}, :create_media]" in post_routes
    assert r"[%r{\A/api/v1/media/([^/]+)\z}, :show_media]" in web
    for name in ("access_tokens", "media"):
        assert f"require_relative '{name}'" in web


def test_tootctl_prints_tokens_only_as_a_stand_in_command() -> None:
    tootctl = ruby_source("lib/standin/tootctl.rb")
    assert "%w(standin token) => :standin_token," in tootctl
    assert "require_relative 'access_tokens'" in tootctl


def test_the_url_rules_follow_paperclip_rb() -> None:
    """The rules upstream's paperclip.rb selects: alias (S3_ALIAS_HOST or S3_CLOUDFRONT_HOST, by
    key presence), else path-style on S3_HOSTNAME or s3-<region>.amazonaws.com -- never on the
    endpoint; upstream's defaults for region, protocol and permission."""
    s3 = ruby_source("lib/standin/s3.rb")
    assert "ENV.key?('S3_ALIAS_HOST') || ENV.key?('S3_CLOUDFRONT_HOST')" in s3
    assert """"#{scheme}//#{ENV['S3_ALIAS_HOST'] || ENV['S3_CLOUDFRONT_HOST']}/#{key}\"""" in s3
    assert """"#{scheme}//#{host_name}/#{bucket}/#{key}\"""" in s3
    assert """ENV.fetch('S3_HOSTNAME') { "s3-#{region}.amazonaws.com" }""" in s3
    assert "ENV.fetch('S3_REGION') { 'us-east-1' }" in s3
    assert "ENV.fetch('S3_PROTOCOL') { 'https' }" in s3
    assert "ENV.fetch('S3_PERMISSION') { 'public-read' }" in s3
    assert "CACHE_CONTROL = 'public, max-age=315576000, immutable'" in s3
    media = ruby_source("lib/standin/media.rb")
    assert '"media_attachments/files/#{id_partition(id)}/original/#{file_name}"' in media


def test_the_lab_check_is_executable_and_fails_loudly() -> None:
    assert os.access(LAB_CHECK, os.X_OK)
    text = LAB_CHECK.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -uo pipefail" in text
    assert text.rstrip().endswith("[ $failed = 0 ]")


def test_the_readme_documents_media_last() -> None:
    readme = (STANDIN / "README.md").read_text()
    section = readme[readme.index("\n## Media and object storage\n") :]
    assert "\n## " not in section[1:], "the media section is the last one"
    for key in ("S3_ALIAS_HOST", "S3_HOSTNAME", "S3_ENDPOINT", "S3_PERMISSION", "standin token"):
        assert key in section


# ---- lab host ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab_host() -> Iterator[str]:
    runner = CliRunner()
    env = {OWNER_ENV: os.environ.get(OWNER_ENV) or "pytest-standin-mastodon-s3"}
    up = runner.invoke(cli, ["lab", "up", LAB_HOST], env=env)
    assert up.exit_code == 0, up.output
    try:
        yield LAB_HOST
    finally:
        down = runner.invoke(cli, ["lab", "down", LAB_HOST])
        assert down.exit_code == 0, down.output


@pytest.mark.lab
@pytest.mark.skipif(not CAN_BOOT, reason="needs root and the lab's tools")
def test_the_lab_check_passes_on_a_fresh_host(lab_host: str) -> None:
    env = {**os.environ, "FEDICTL": str(Path(sys.executable).parent / "fedictl")}
    result = subprocess.run(
        [str(LAB_CHECK), lab_host], capture_output=True, text=True, env=env, timeout=900
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^\d+ passed, 0 failed$", result.stdout, re.M), result.stdout[-2000:]
    assert "\nFAIL " not in result.stdout
