"""`fedictl validate`: every bad input named by file, key, what was found and the fix; exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _inventory_helpers import (
    EXAMPLE,
    EXAMPLE_PASSWORD,
    Project,
    all_secret_values,
    demo_fixture,  # noqa: F401 - fixture
    project_fixture,  # noqa: F401 - fixture
)

from fedictl import inventory, secrets, yamlio
from fedictl.apps import mastodon

MAIN = "group_vars/all/main.yml"
VAULT = "group_vars/all/vault.yml"
HOSTS = "hosts.yml"


def _validate(p: Project, *extra: str) -> Any:
    return p.invoke("validate", "-i", str(p.inventory()), *extra)


def test_generated_inventory_is_valid(demo: Project) -> None:
    result = _validate(demo)
    assert result.exit_code == 0, result.output
    assert "valid (1 host(s): lab1)" in result.stdout
    for value in all_secret_values(demo):
        assert value not in result.output


def test_example_inventory_is_valid_with_its_test_only_password() -> None:
    from click.testing import CliRunner

    from fedictl.cli import cli

    assert "TEST-ONLY" in EXAMPLE_PASSWORD.name
    result = CliRunner().invoke(
        cli, ["validate", "-i", str(EXAMPLE), "--vault-password-file", str(EXAMPLE_PASSWORD)]
    )
    assert result.exit_code == 0, result.output


Edit = Callable[[dict[str, Any]], None]


def _apps(f: Callable[[dict[str, Any]], None]) -> Edit:
    return lambda main: f(main["fedictl_apps"])


# (file, key path, edit of main.yml) — each must be reported by file and key, exit 2.
MAIN_CASES: list[tuple[str, str, Edit]] = [
    (
        MAIN,
        "fedictl_apps.mastodon.local_domain",
        _apps(lambda a: a["mastodon"].update(local_domain="-bad-.example")),
    ),
    (
        MAIN,
        "fedictl_apps.mastodon.web_domain",
        _apps(lambda a: a["mastodon"].update(web_domain="under_score.example.test")),
    ),
    (
        MAIN,
        "fedictl_apps.pixelfed.domain",
        _apps(lambda a: a["pixelfed"].update(domain="social.example.test")),
    ),
    (MAIN, "fedictl_admin_email", lambda m: m.update(fedictl_admin_email="root@localhost")),
    (MAIN, "fedictl_apps.diaspora", _apps(lambda a: a.update(diaspora={"enabled": True}))),
    (MAIN, "fedictl_apps.peertube.enabled", _apps(lambda a: a["peertube"].update(enabled="yes"))),
    (
        MAIN,
        "fedictl_apps.mastodon.local_domian",
        _apps(lambda a: a["mastodon"].update(local_domian="x.example.test")),
    ),
    (MAIN, "fedictl_s3.endpoint", lambda m: m["fedictl_s3"].update(enabled=True)),
    (MAIN, "fedictl_s3.bucket", lambda m: m["fedictl_s3"].update(enabled=True)),
    (VAULT, "vault_s3_secret_access_key", lambda m: m["fedictl_s3"].update(enabled=True)),
    (MAIN, "fedictl_smtp.host", lambda m: m["fedictl_smtp"].update(host="")),
    (MAIN, "fedictl_smtp.from_address", lambda m: m["fedictl_smtp"].pop("from_address")),
    (MAIN, "fedictl_smtp.tls", lambda m: m["fedictl_smtp"].update(tls="ssl3")),
    (VAULT, "vault_smtp_password", lambda m: m["fedictl_smtp"].update(user="mailer")),
    (MAIN, "fedictl_smtp", lambda m: m.pop("fedictl_smtp")),
    (MAIN, "fedictl_backup.repository", lambda m: m["fedictl_backup"].update(repository="")),
    (
        MAIN,
        "fedictl_backup.retention",
        lambda m: m["fedictl_backup"].update(retention={"daily": 0, "weekly": 0, "monthly": 0}),
    ),
    (
        MAIN,
        "fedictl_acme.directory_url",
        lambda m: m["fedictl_acme"].update(directory_url="http://insecure.example"),
    ),
    (MAIN, "fedictl_apps.mastodon.version", _apps(lambda a: a["mastodon"].update(version="main"))),
    (MAIN, "fedictl_apps.peertube.version", _apps(lambda a: a["peertube"].update(version="8.2"))),
    (MAIN, "fedictl_apps.pixelfed.redis_db", _apps(lambda a: a["pixelfed"].update(redis_db=2))),
    (
        MAIN,
        "fedictl_apps.pixelfed.redis_db_pulse",
        _apps(lambda a: a["pixelfed"].update(redis_db_pulse=16)),
    ),
    (
        MAIN,
        "fedictl_apps.pixelfed.db_name",
        _apps(lambda a: a["pixelfed"].update(db_name="peertube_prod")),
    ),
    (
        MAIN,
        "fedictl_apps.pixelfed.db_user",
        _apps(lambda a: a["pixelfed"].update(db_user="mastodon")),
    ),
    (MAIN, "fedictl_apps.peertube.port", _apps(lambda a: a["peertube"].update(port=4000))),
    (MAIN, "fedictl_apps.mastodon.web_port", _apps(lambda a: a["mastodon"].update(web_port=443))),
    (
        MAIN,
        "fedictl_apps.mastodon.streaming_port",
        _apps(lambda a: a["mastodon"].update(streaming_port="4000")),
    ),
    (MAIN, "fedictl_apps", _apps(lambda a: [s.update(enabled=False) for s in a.values()])),
    (MAIN, "fedictl_org_name", lambda m: m.update(fedictl_org_name="  ")),
    (
        MAIN,
        "fedictl_apps.mastodon.db_connections",
        _apps(lambda a: a["mastodon"].update(db_connections=0)),
    ),
]


def test_optional_settings_the_playbooks_read_are_accepted(demo: Project) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["mastodon"]["db_connections"] = 40
    demo.write_main_vars(main)
    override = demo.inventory() / "host_vars" / "lab1" / "main.yml"
    override.parent.mkdir(parents=True)
    override.write_text("fedictl_private_address: 10.0.0.5\n")
    assert _validate(demo).exit_code == 0
    override.write_text("fedictl_private_address: not-an-ip\n")
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{override}: hosts.lab1.fedictl_private_address: found 'not-an-ip'" in result.stderr


def _media_in_a_bucket(demo: Project, endpoint: str, **s3: object) -> Any:
    """Turn media in object storage on, complete but for what ``s3`` changes; validate."""
    main = demo.main_vars()
    main["fedictl_s3"] = {
        "enabled": True,
        "endpoint": endpoint,
        "bucket": "org-media",
        "region": "us-east-1",
        "access_key_id": "AKIATESTONLY",
        **s3,
    }
    demo.write_main_vars(main)
    data = demo.vault_data()
    data["vault_s3_secret_access_key"] = "TEST-ONLY-s3-secret"
    demo.write_vault_data(data)
    return _validate(demo)


def test_media_off_aws_need_a_public_host(demo: Project) -> None:
    """Mastodon builds media URLs on s3-<region>.amazonaws.com unless S3_ALIAS_HOST (or
    S3_HOSTNAME) says otherwise: another provider without a public host is refused up front."""
    result = _media_in_a_bucket(demo, "https://objects.example.net")
    assert result.exit_code == 2, result.output
    line = next(x for x in result.stderr.splitlines() if "fedictl_s3.public_host:" in x)
    assert "found nothing, with the endpoint objects.example.net, which is not AWS" in line
    assert "fedictl_s3.proxy: true" in line
    assert _media_in_a_bucket(demo, "https://s3.eu-west-1.amazonaws.com").exit_code == 0
    ok = _media_in_a_bucket(demo, "https://objects.example.net", public_host="media.example.org")
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("s3", "key", "found"),
    [
        ({"proxy": True}, "fedictl_s3.public_host", "found nothing"),
        ({"proxy": "yes", "public_host": "media.example.org"}, "fedictl_s3.proxy", "found 'yes'"),
        ({"public_host": "https://media.example.org"}, "fedictl_s3.public_host", "found"),
        ({"permission": "authenticated-read"}, "fedictl_s3.permission", "found"),
    ],
    ids=["proxy-without-host", "proxy-not-bool", "host-is-a-url", "unknown-acl"],
)
def test_media_host_settings_are_checked(
    demo: Project, s3: dict[str, object], key: str, found: str
) -> None:
    result = _media_in_a_bucket(demo, "https://s3.eu-west-1.amazonaws.com", **s3)
    assert result.exit_code == 2, result.output
    assert f"{demo.inventory() / MAIN}: {key}: {found}" in result.stderr, result.stderr
    assert "TEST-ONLY-s3-secret" not in result.output


def test_media_proxy_with_its_host_and_extra_media_hosts_are_accepted(demo: Project) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["mastodon"]["extra_media_hosts"] = ["cdn.example.org"]
    demo.write_main_vars(main)
    result = _media_in_a_bucket(
        demo, "https://objects.example.net", public_host="media.example.org", proxy=True,
        permission="private",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    main = demo.main_vars()
    main["fedictl_apps"]["mastodon"]["extra_media_hosts"] = "cdn.example.org"
    demo.write_main_vars(main)
    result = _validate(demo)
    assert result.exit_code == 2
    assert "fedictl_apps.mastodon.extra_media_hosts: found" in result.stderr


@pytest.mark.parametrize(("file", "key", "edit"), MAIN_CASES, ids=[c[1] for c in MAIN_CASES])
def test_bad_settings_are_named_by_file_and_key(
    demo: Project, file: str, key: str, edit: Edit
) -> None:
    main = demo.main_vars()
    edit(main)
    demo.write_main_vars(main)
    result = _validate(demo)
    assert result.exit_code == 2, result.output
    expected = f"{demo.inventory() / file}: {key}: found "
    assert expected in result.stderr, result.stderr
    line = next(x for x in result.stderr.splitlines() if expected in x)
    assert "; fix: " in line
    assert "Traceback" not in result.output


@pytest.mark.parametrize("spec", secrets.SPECS, ids=[s.key for s in secrets.SPECS])
def test_missing_or_malformed_secret(demo: Project, spec: secrets.SecretSpec) -> None:
    data = demo.vault_data()
    for value, found in (("", "nothing"), ("not right at all " * 4, "characters")):
        data[spec.key] = value
        demo.write_vault_data(data)
        result = _validate(demo)
        assert result.exit_code == 2
        line = next(x for x in result.stderr.splitlines() if f"{VAULT}: {spec.key}:" in x)
        assert found in line
        assert "not right at all" not in result.output  # never echo a secret value


def test_secrets_of_disabled_apps_are_not_required(demo: Project) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["peertube"]["enabled"] = False
    demo.write_main_vars(main)
    data = demo.vault_data()
    del data["vault_peertube_secret"]
    demo.write_vault_data(data)
    assert _validate(demo).exit_code == 0


def test_vapid_halves_must_belong_together(demo: Project) -> None:
    data = demo.vault_data()
    data["vault_mastodon_vapid_public_key"] = mastodon.vapid_keypair()[1]
    demo.write_vault_data(data)
    result = _validate(demo)
    assert result.exit_code == 2
    expected = "vault_mastodon_vapid_public_key: found a public key that does not belong"
    assert expected in result.stderr


def test_enabled_app_without_a_host(demo: Project) -> None:
    hosts = demo.inventory() / HOSTS
    text = hosts.read_text()
    hosts.write_text(
        text.replace("peertube:\n          hosts:\n            lab1: {}\n", "peertube: {}\n")
    )
    result = _validate(demo)
    assert result.exit_code == 2
    assert (
        f"{hosts}: all.children.fediverse.children.peertube: found no hosts; "
        "fix: put a host in group peertube"
    ) in result.stderr


@pytest.mark.parametrize(
    ("var", "value"), [("ansible_host", ""), ("ansible_port", 70000), ("ansible_user", "Root User")]
)
def test_bad_connection_settings(demo: Project, var: str, value: object) -> None:
    hosts = demo.inventory() / HOSTS
    import yaml

    data = yamlio.load_file(hosts)
    data["all"]["children"]["fediverse"]["hosts"]["lab1"][var] = value
    hosts.write_text(yaml.safe_dump(data))
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{hosts}: hosts.lab1.{var}: found" in result.stderr


def test_ports_collide_only_on_the_same_host(demo: Project) -> None:
    import yaml

    hosts = demo.inventory() / HOSTS
    data = yamlio.load_file(hosts)
    fediverse = data["all"]["children"]["fediverse"]
    fediverse["hosts"]["video1"] = {
        "ansible_host": "10.213.0.11",
        "ansible_user": "root",
        "ansible_port": 22,
    }
    fediverse["children"]["peertube"]["hosts"] = {"video1": {}}
    hosts.write_text(yaml.safe_dump(data))
    main = demo.main_vars()
    main["fedictl_apps"]["peertube"]["port"] = 3000  # mastodon's web port, on another host
    demo.write_main_vars(main)
    assert _validate(demo).exit_code == 0
    fediverse["children"]["mastodon"]["hosts"]["video1"] = {}
    hosts.write_text(yaml.safe_dump(data))
    result = _validate(demo)
    assert result.exit_code == 2
    assert "port 3000 already used on host video1 by mastodon.web_port" in result.stderr


def test_all_problems_are_reported_at_once(demo: Project) -> None:
    main = demo.main_vars()
    main["fedictl_admin_email"] = "nope"
    main["fedictl_apps"]["peertube"]["domain"] = "nope"
    main["fedictl_smtp"]["port"] = 0
    demo.write_main_vars(main)
    data = demo.vault_data()
    del data["vault_redis_password"]
    demo.write_vault_data(data)
    result = _validate(demo)
    assert result.exit_code == 2
    for key in (
        "fedictl_admin_email",
        "fedictl_apps.peertube.domain",
        "fedictl_smtp.port",
        "vault_redis_password",
    ):
        assert f": {key}: found" in result.stderr, key
    assert "4 problem(s)" in result.stderr


def test_host_vars_override_is_checked_and_named(demo: Project) -> None:
    override = demo.inventory() / "host_vars" / "lab1.yml"
    override.parent.mkdir()
    override.write_text("fedictl_admin_email: not-an-email\n")
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{override}: fedictl_admin_email: found 'not-an-email'" in result.stderr


def test_wrong_vault_password_names_the_vault_and_the_fix(demo: Project) -> None:
    wrong = demo.root / "wrong.pass"
    wrong.write_text("wrong\n")
    result = _validate(demo, "--vault-password-file", str(wrong))
    assert result.exit_code == 2
    line = result.stderr.splitlines()[-1]
    assert str(demo.inventory() / VAULT) in line
    assert "fix: pass --vault-password-file" in line


def test_missing_password_file_names_the_vault(demo: Project) -> None:
    demo.password_file().unlink()
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{demo.inventory() / VAULT}: (whole file): found a vault that cannot be opened" in (
        result.stderr
    )


def test_yaml_syntax_error_names_the_file(demo: Project) -> None:
    (demo.inventory() / MAIN).write_text("fedictl_org_name: [unclosed\n")
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{demo.inventory() / MAIN}: (whole file): found" in result.stderr
    assert "fix: correct the YAML syntax" in result.stderr


def test_broken_hosts_file(demo: Project) -> None:
    (demo.inventory() / HOSTS).write_text("all: [1, 2\n")
    result = _validate(demo)
    assert result.exit_code == 2
    assert f"{demo.inventory() / HOSTS}: (whole file): found invalid YAML" in result.stderr
    (demo.inventory() / HOSTS).write_text("- just a list\n")
    result = _validate(demo)
    assert f"{demo.inventory() / HOSTS}: all: found a list" in result.stderr


def test_no_hosts_file(project: Project, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = project.invoke("validate", "-i", str(empty))
    assert result.exit_code == 2
    assert "hosts.yml: (whole file): found nothing" in result.stderr


def test_json_output(demo: Project) -> None:
    result = _validate(demo, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["valid"] is True
    main = demo.main_vars()
    main["fedictl_admin_email"] = "x"
    demo.write_main_vars(main)
    result = _validate(demo, "--json")
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert problems[0]["key"] == "fedictl_admin_email"
    assert problems[0]["file"] == str(demo.inventory() / MAIN)


def test_inventory_by_name_and_by_hosts_file(demo: Project) -> None:
    assert demo.invoke("validate", "-i", "demo").exit_code == 0
    assert demo.invoke("validate", "-i", str(demo.inventory() / HOSTS)).exit_code == 0


def test_loader_sees_what_ansible_sees(demo: Project) -> None:
    from fedictl import vault

    inv = inventory.load(demo.inventory(), vault.load_secret(demo.password_file()))
    assert inv.problems == []
    assert inv.groups["pixelfed"] == ["lab1"]
    lab1 = inv.hostvars["lab1"]
    assert lab1["vault_redis_password"] == demo.vault_data()["vault_redis_password"]
    assert type(lab1["fedictl_apps"]) is dict
    assert type(lab1["fedictl_apps"]["mastodon"]["redis_db"]) is int
