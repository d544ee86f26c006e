"""`fedictl upgrade`: input checks before any host, the playbook call, and the pin afterwards.

ansible-playbook is a fake first on PATH (as in test_deploy.py); what the playbook does on a host
is proven by the molecule scenario `mastodon`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from _inventory_helpers import (
    Project,
    all_secret_values,
    demo_fixture,  # noqa: F401 - fixture
    project_fixture,  # noqa: F401 - fixture
)

from fedictl import upgrade
from fedictl.errors import UsageError

FAKE = """#!{python}
import json, os, sys
with open(os.environ["FAKE_RECORD"], "w") as f:
    json.dump({{"argv": sys.argv, "cwd": os.getcwd()}}, f)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ansible-playbook"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "record.json"
    monkeypatch.setenv("FAKE_RECORD", str(record))
    monkeypatch.delenv("FAKE_EXIT", raising=False)
    return record


def _pin(demo: Project) -> str:
    return str(demo.main_vars()["fedictl_apps"]["mastodon"]["version"])


def test_runs_the_upgrade_playbook_with_the_target_then_pins_it(demo: Project, fake: Path) -> None:
    main = demo.inventory() / "group_vars" / "all" / "main.yml"
    comment_lines = [line for line in main.read_text().splitlines() if line.startswith("#")]
    result = demo.invoke("upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()))
    assert result.exit_code == 0, result.output
    call = json.loads(fake.read_text())
    argv = call["argv"]
    assert argv[-1] == "playbooks/upgrade.yml"
    extra = json.loads(argv[argv.index("--extra-vars") + 1])
    assert extra == {"fedictl_upgrade_app": "mastodon", "mastodon_version": "v4.7.7"}
    assert _pin(demo) == "v4.7.7"
    assert f"Pinned mastodon v4.7.7 in {main}" in result.output
    # The edit keeps the file's comments and every other setting.
    assert [ln for ln in main.read_text().splitlines() if ln.startswith("#")] == comment_lines
    assert demo.main_vars()["fedictl_apps"]["peertube"]["version"] == "v8.3.2"


def test_a_failed_upgrade_keeps_the_pin_and_passes_the_exit_code(
    demo: Project, fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "2")
    result = demo.invoke("upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()))
    assert result.exit_code == 2
    assert _pin(demo) == "v4.7.6"
    assert "Pinned" not in result.output


def test_release_archive_is_passed_and_pinned(demo: Project, fake: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mastodon-v4.7.7.tar.gz"
    archive.write_bytes(b"not really an archive")
    checksum = "sha256:" + "ab" * 32
    result = demo.invoke(
        "upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()),
        "--release-archive", str(archive), "--release-checksum", checksum,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    argv = json.loads(fake.read_text())["argv"]
    extra = json.loads(argv[argv.index("--extra-vars") + 1])
    assert extra["mastodon_release_archive"] == str(archive.resolve())
    assert extra["mastodon_release_archive_checksum"] == checksum
    pinned = demo.main_vars()["fedictl_apps"]["mastodon"]
    assert (pinned["release_archive"], pinned["release_archive_checksum"]) == (
        str(archive.resolve()),
        checksum,
    )
    # The pinned inventory is still valid.
    assert demo.invoke("validate", "-i", str(demo.inventory())).exit_code == 0


def test_check_mode_does_not_pin(demo: Project, fake: Path) -> None:
    result = demo.invoke(
        "upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()), "--check"
    )
    assert result.exit_code == 0, result.output
    assert "--check" in json.loads(fake.read_text())["argv"]
    assert _pin(demo) == "v4.7.6"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mastodon", "--to", "4.6.6"], "--to '4.6.6' is not a release tag"),
        (["mastodon", "--to", "v4.6"], "is not a release tag"),
        (["mastodon", "--to", "main"], "is not a release tag"),
        (["mastodon", "--to", "v4.5.15"], "older than the pinned v4.7.6"),
        (["pixelfed", "--to", "v0.14.5"], "fedictl upgrades only mastodon, peertube"),
        (["peertube", "--to", "v8.2.4"], "older than the pinned v8.3.2"),
        (
            ["mastodon", "--to", "v4.7.7", "--release-archive", "/nonexistent.tar.gz"],
            "no such file",
        ),
    ],
)
def test_bad_input_exits_2_before_any_host(
    demo: Project, fake: Path, args: list[str], message: str
) -> None:
    result = demo.invoke("upgrade", *args, "-i", str(demo.inventory()))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not fake.exists(), "ansible-playbook ran"
    assert _pin(demo) == "v4.7.6"


def test_a_missing_secret_is_named_before_any_host(demo: Project, fake: Path) -> None:
    vault = demo.vault_data()
    del vault["vault_mastodon_secret_key_base"]
    demo.write_vault_data(vault)
    result = demo.invoke("upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()))
    assert result.exit_code == 2
    assert "vault_mastodon_secret_key_base" in result.output
    assert "fedictl secrets ensure" in result.output
    assert not fake.exists()


def test_no_secret_in_the_output(demo: Project, fake: Path) -> None:
    result = demo.invoke(
        "upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()), "--print-command"
    )
    assert result.exit_code == 0
    for secret in all_secret_values(demo):
        assert secret not in result.output


def test_peertube_upgrade_passes_its_own_checksum_setting_and_pins_it(
    demo: Project, fake: Path, tmp_path: Path
) -> None:
    """PeerTube's role takes the zip's sha256 as bare hex in peertube_release_sha256 (its
    registry says so), and upgrade.yml's PeerTube play is chosen by fedictl_upgrade_app."""
    archive = tmp_path / "peertube-v8.3.3.zip"
    archive.write_bytes(b"not really a zip")
    digest = "cd" * 32
    result = demo.invoke(
        "upgrade", "peertube", "--to", "v8.3.3", "-i", str(demo.inventory()),
        "--release-archive", str(archive), "--release-checksum", f"sha256:{digest}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    argv = json.loads(fake.read_text())["argv"]
    assert argv[-1].endswith("playbooks/upgrade.yml") or "playbooks/upgrade.yml" in " ".join(argv)
    extra = json.loads(argv[argv.index("--extra-vars") + 1])
    assert extra == {
        "fedictl_upgrade_app": "peertube",
        "peertube_version": "v8.3.3",
        "peertube_release_archive": str(archive.resolve()),
        "peertube_release_sha256": digest,
    }
    pinned = demo.main_vars()["fedictl_apps"]["peertube"]
    assert (pinned["version"], pinned["release_sha256"]) == ("v8.3.3", digest)
    assert demo.main_vars()["fedictl_apps"]["mastodon"]["version"] == "v4.7.6"
    assert demo.invoke("validate", "-i", str(demo.inventory())).exit_code == 0


def test_pin_refuses_a_file_without_the_app_block(tmp_path: Path) -> None:
    main = tmp_path / "main.yml"
    main.write_text(yaml.safe_dump({"fedictl_apps": {"peertube": {"version": "v8.2.1"}}}))
    done = upgrade.Plan("mastodon", "v4.7.6", "v4.7.7")
    with pytest.raises(Exception, match="edit the version by hand"):
        upgrade.pin(main, done)


@pytest.mark.parametrize("text", ["v1.2", "1.2.3", "v01.2.3", "v1.2.3-rc1", " v1.2.3"])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        upgrade.parse_version(text)


def test_parse_version_orders_numerically() -> None:
    assert upgrade.parse_version("v4.10.0") > upgrade.parse_version("v4.9.12")


def test_list_shows_the_pin_its_line_and_the_next(demo: Project, fake: Path) -> None:
    main = demo.inventory() / "group_vars" / "all" / "main.yml"
    main.write_text(main.read_text().replace("v4.7.6", "v4.6.5"))
    result = demo.invoke("upgrade", "mastodon", "--list", "-i", str(demo.inventory()))
    assert result.exit_code == 0, result.output
    text = result.output
    assert "mastodon v4.6.5 (pinned): WARN:" in text and "GHSA-62j4-hvj7-px3f" in text
    assert "its line 4.6: newest v4.6.9; needs node >= 22" in text
    assert "next line 4.7: newest v4.7.6; needs node >= 22, postgresql >= 14, redis >= 7.0" in text
    assert "fedictl upgrade mastodon --to v4.7.6 -i INVENTORY" in text
    shown = json.loads(
        demo.invoke("upgrade", "mastodon", "--list", "--json", "-i", str(demo.inventory())).output
    )
    assert shown["installed"] == "v4.6.5" and shown["next_line"]["newest"] == "v4.7.6"
    assert not fake.exists(), "--list runs no playbook"


def test_a_line_fedictl_does_not_know_is_refused_unless_overridden(
    demo: Project, fake: Path
) -> None:
    inv = str(demo.inventory())
    refused = demo.invoke("upgrade", "mastodon", "--to", "v4.8.0", "-i", inv)
    assert refused.exit_code == 2
    assert "does not know mastodon's 4.8 line" in refused.output
    assert "4.7 (newest v4.7.6)" in refused.output and "--unknown-line" in refused.output
    assert not fake.exists() and _pin(demo) == "v4.7.6", "nothing ran, nothing moved"
    done = demo.invoke("upgrade", "mastodon", "--to", "v4.8.0", "-i", inv, "--unknown-line")
    assert done.exit_code == 0, done.output
    assert _pin(demo) == "v4.8.0"


def test_to_and_list_go_alone(demo: Project, fake: Path) -> None:
    inv = str(demo.inventory())
    for args in ((), ("--to", "v4.7.7", "--list")):
        result = demo.invoke("upgrade", "mastodon", *args, "-i", inv)
        assert result.exit_code == 2 and "give --to vX.Y.Z to upgrade, or --list" in result.output
