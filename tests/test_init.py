"""`fedictl init`: inventories from answers, flags or prompts; golden files; never overwrite."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from _inventory_helpers import (
    Project,
    all_secret_values,
    ansible_tool,
    demo_fixture,  # noqa: F401 - fixture
    example_answers,
    project_fixture,  # noqa: F401 - fixture
)

from fedictl import inventory, secrets, yamlio
from fedictl.apps import mastodon

GOLDEN = Path(__file__).parent / "golden" / "init-example"
UPDATE = os.environ.get("FEDICTL_UPDATE_GOLDEN") == "1"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from {path} (FEDICTL_UPDATE_GOLDEN=1)"


def test_init_writes_the_golden_inventory(demo: Project) -> None:
    inv = demo.inventory()
    _golden("hosts.yml", (inv / inventory.HOSTS).read_text())
    _golden("main.yml", (inv / inventory.MAIN).read_text())
    keys = "\n".join(demo.vault_data()) + "\n"
    _golden("vault-keys.txt", keys)
    assert (inv / inventory.VAULT).read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")


def test_generated_secrets_have_upstream_formats(demo: Project) -> None:
    data = demo.vault_data()
    for spec in secrets.SPECS:
        assert spec.check(data[spec.key]) is None, spec.key
    assert (
        mastodon.vapid_pair_problem(
            data["vault_mastodon_vapid_private_key"], data["vault_mastodon_vapid_public_key"]
        )
        is None
    )
    assert data["vault_smtp_password"] == "" and data["vault_s3_secret_access_key"] == ""


def test_vault_password_file_is_new_private_and_outside_the_project(demo: Project) -> None:
    path = demo.password_file()
    assert path.is_relative_to(demo.config)
    assert not path.is_relative_to(demo.root)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_init_output_names_the_password_file_and_prints_no_secret(project: Project) -> None:
    result = project.init()
    assert result.exit_code == 0
    assert str(project.password_file()) in result.stderr
    for value in all_secret_values(project):
        assert value not in result.output


def test_ansible_inventory_lists_the_generated_inventory(demo: Project) -> None:
    inv = demo.inventory()
    out = subprocess.run(
        [
            ansible_tool("ansible-inventory"),
            "-i",
            str(inv / "hosts.yml"),
            "--list",
            "--vault-password-file",
            str(demo.password_file()),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # fedictl writes user values !unsafe; ansible-inventory shows them as {"__ansible_unsafe": v}
    data = json.loads(out, object_hook=lambda d: d.get("__ansible_unsafe", d))
    for group in ("database", "cache", "web", "mastodon", "peertube", "pixelfed", "workers"):
        assert data[group]["hosts"] == ["lab1"], group
    hostvars = data["_meta"]["hostvars"]["lab1"]
    assert hostvars["ansible_host"] == "10.213.0.10"
    assert hostvars["fedictl_apps"]["mastodon"]["local_domain"] == "social.example.test"
    assert hostvars["vault_peertube_secret"] == demo.vault_data()["vault_peertube_secret"]


def test_refuses_to_overwrite_without_force(demo: Project) -> None:
    before = (demo.inventory() / inventory.VAULT).read_bytes()
    result = demo.init()
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert (demo.inventory() / inventory.VAULT).read_bytes() == before


def test_force_rewrites_settings_but_never_rotates_secrets(demo: Project) -> None:
    before = demo.vault_data()
    answers = example_answers()
    answers["org_name"] = "Renamed Collective"
    result = demo.init(answers, "demo", "--force")
    assert result.exit_code == 0, result.output
    assert demo.main_vars()["fedictl_org_name"] == "Renamed Collective"
    assert demo.vault_data() == before


def test_force_refuses_when_the_existing_vault_cannot_be_read(
    demo: Project, tmp_path: Path
) -> None:
    other = tmp_path / "other.pass"
    other.write_text("not-the-password\n")
    result = demo.init(example_answers(), "demo", "--force", "--vault-password-file", str(other))
    assert result.exit_code == 1
    assert "refusing to replace" in result.stderr
    assert "vault.yml" in result.stderr


def test_existing_vault_password_file_is_used_and_not_changed(
    project: Project, tmp_path: Path
) -> None:
    given = tmp_path / "mine.pass"
    given.write_text("a-password-the-user-chose\n")
    result = project.init(example_answers(), "demo", "--vault-password-file", str(given))
    assert result.exit_code == 0, result.output
    assert given.read_text() == "a-password-the-user-chose\n"
    assert not project.password_file().exists()
    assert str(given) in result.stderr


def test_non_interactive_with_flags_only(project: Project, tmp_path: Path) -> None:
    pub = tmp_path / "admin.pub"
    pub.write_text(example_answers()["admin_ssh_keys"][0] + "\n")
    result = project.invoke(
        "init",
        "flags",
        "--no-input",
        "--admin-ssh-key",
        str(pub),
        "--org-name",
        "Flag Org",
        "--admin-email",
        "a@flags.test",
        "--app",
        "peertube",
        "--peertube-domain",
        "video.flags.test",
        "--server-address",
        "192.0.2.7",
        "--ssh-user",
        "debian",
        "--ssh-port",
        "2222",
        "--smtp-host",
        "mail.flags.test",
        "--backup-repository",
        "/srv/restic/flags",
    )
    assert result.exit_code == 0, result.output
    main = project.main_vars("flags")
    assert main["fedictl_admin_ssh_keys"] == example_answers()["admin_ssh_keys"]
    assert main["fedictl_apps"]["peertube"]["enabled"] is True
    assert main["fedictl_apps"]["mastodon"]["enabled"] is False
    assert main["fedictl_smtp"]["from_address"] == "notifications@video.flags.test"
    assert main["fedictl_acme"]["email"] == "a@flags.test"
    hosts = yamlio.load_file(project.inventory("flags") / "hosts.yml")
    fediverse = hosts["all"]["children"]["fediverse"]
    assert fediverse["hosts"] == {
        "flags1": {"ansible_host": "192.0.2.7", "ansible_user": "debian", "ansible_port": 2222}
    }
    assert fediverse["children"]["mastodon"] == {}
    assert "vault_mastodon_secret_key_base" not in project.vault_data("flags")


def test_non_interactive_lists_every_missing_answer(project: Project) -> None:
    result = project.invoke("init", "empty", "--no-input")
    assert result.exit_code == 2
    for key in ("org_name", "admin_email", "apps", "servers"):
        assert f"answers: {key}: found nothing" in result.stderr, key
    assert not project.inventory("empty").exists()
    assert not project.password_file("empty").exists()


def test_interactive_prompts_with_defaults(project: Project) -> None:
    lines = [
        "mastodon,pixelfed",  # apps
        example_answers()["admin_ssh_keys"][0],  # admin SSH key
        "",  # server name (default NAME1)
        "203.0.113.5",  # address
        "",  # ssh user (root)
        "",  # ssh port (22)
        "n",  # another server?
        "",  # s3? (no)
        "Prompted Org",
        "owner@prompted.test",
        "prompted.test",
        "",
        "photos.prompted.test",
        "smtp.prompted.test",
        "",
        "",
        "mailer",
        "s3cret-smtp-pass",
        "",
        "",
        "",
        "rest:https://backup.prompted.test/org",
        "",
        "",
        "",
    ]
    result = project.invoke("init", "prompted", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    main = project.main_vars("prompted")
    assert main["fedictl_apps"]["mastodon"]["local_domain"] == "prompted.test"
    assert main["fedictl_apps"]["pixelfed"]["domain"] == "photos.prompted.test"
    assert main["fedictl_smtp"]["user"] == "mailer"
    assert main["fedictl_smtp"]["from_address"] == "notifications@prompted.test"
    assert project.vault_data("prompted")["vault_smtp_password"] == "s3cret-smtp-pass"
    assert "s3cret-smtp-pass" not in result.output  # hidden prompt, never echoed


def test_provided_secrets_come_from_the_environment(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDICTL_SMTP_PASSWORD", "from-the-environment")
    answers = example_answers()
    answers["smtp"]["user"] = "mailer"
    result = project.init(answers)
    assert result.exit_code == 0, result.output
    assert project.vault_data()["vault_smtp_password"] == "from-the-environment"
    assert "from-the-environment" not in result.output


BAD_ANSWERS = [
    (
        "apps.mastodon.local_domain",
        lambda a: a["apps"]["mastodon"].update(local_domain="not a domain"),
    ),
    ("apps.pixelfed.domain", lambda a: a["apps"]["pixelfed"].update(domain="video.example.test")),
    ("admin_email", lambda a: a.update(admin_email="admin-at-example")),
    ("apps.friendica", lambda a: a["apps"].update(friendica={})),
    ("smtp.port", lambda a: a["smtp"].update(port="twenty-five")),
    ("smtp.host", lambda a: a["smtp"].update(host="")),
    ("smtp.password", lambda a: a["smtp"].update(user="mailer")),
    ("backup.repository", lambda a: a["backup"].update(repository="")),
    (
        "s3.bucket",
        lambda a: a.update(
            s3={
                "enabled": True,
                "endpoint": "https://s3.example.test",
                "region": "eu-1",
                "access_key_id": "AK",
                "secret_access_key": "sk",
            }
        ),
    ),
    (
        "s3.secret_access_key",
        lambda a: a.update(
            s3={
                "enabled": True,
                "bucket": "media",
                "endpoint": "https://s3.example.test",
                "region": "eu-1",
                "access_key_id": "AK",
            }
        ),
    ),
    ("apps.mastodon.version", lambda a: a["apps"]["mastodon"].update(version="main")),
    ("apps.pixelfed.redis_db", lambda a: a["apps"]["pixelfed"].update(redis_db=1)),
    ("apps.pixelfed.db_name", lambda a: a["apps"]["peertube"].update(db_name="pixelfed")),
    ("apps.peertube.port", lambda a: a["apps"]["peertube"].update(port=3000)),
    ("placement.database", lambda a: a.update(placement={"database": "nowhere"})),
    ("servers[1].name", lambda a: a["servers"].append(dict(a["servers"][0]))),
    ("acme.directory_url", lambda a: a.update(acme={"directory_url": "ftp://acme"})),
    ("unknown_key", lambda a: a.update(unknown_key=1)),
]


@pytest.mark.parametrize(("key", "mutate"), BAD_ANSWERS, ids=[k for k, _ in BAD_ANSWERS])
def test_bad_answers_are_rejected_before_anything_is_written(
    project: Project, key: str, mutate: object
) -> None:
    answers = example_answers()
    mutate(answers)  # type: ignore[operator]
    result = project.init(answers)
    assert result.exit_code == 2, result.output
    assert f"answers.yml: {key}" in result.stderr, result.stderr
    assert "fix: " in result.stderr
    assert "Traceback" not in result.output
    assert not project.inventory().exists()
    assert not project.password_file().exists()


def test_answers_file_that_is_not_yaml(project: Project) -> None:
    path = project.root / "broken.yml"
    path.write_text("org_name: [unclosed\n")
    result = project.invoke("init", "demo", "--answers", str(path))
    assert result.exit_code == 2
    assert "broken.yml" in result.stderr


def test_bad_inventory_name(project: Project) -> None:
    result = project.invoke("init", "../escape", "--no-input")
    assert result.exit_code == 2
    assert "inventory name" in result.stderr


def test_admin_ssh_keys_are_required_and_checked(project: Project) -> None:
    answers = example_answers()
    answers["admin_ssh_keys"] = ["not a key"]
    result = project.init(answers)
    assert result.exit_code == 2
    assert "admin_ssh_keys[0]: found 'not a key'" in result.stderr
    del answers["admin_ssh_keys"]
    result = project.init(answers)
    assert result.exit_code == 2
    assert "admin_ssh_keys: found []" in result.stderr


def test_lab_servers_get_their_key_and_no_host_key_pinning(project: Project) -> None:
    answers = example_answers()
    answers["servers"][0].update(identity_file="/var/lib/fedictl/lab/id_ed25519",
                                 host_key_checking=False)  # fmt: skip
    result = project.init(answers)
    assert result.exit_code == 0, result.output
    hosts = yamlio.load_file(project.inventory() / inventory.HOSTS)
    lab1 = hosts["all"]["children"]["fediverse"]["hosts"]["lab1"]
    assert lab1["ansible_ssh_private_key_file"] == "/var/lib/fedictl/lab/id_ed25519"
    assert "StrictHostKeyChecking=no" in lab1["ansible_ssh_common_args"]
