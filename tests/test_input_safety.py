"""Issue 22, the Python side: user values reach Ansible verbatim, no input makes a traceback,
and the gaps `validate` left to deploy time are closed. Each test failed before its fix.

Every command runs through click's CliRunner with exceptions caught: a traceback shows up as
``result.exception`` that is not SystemExit, and each test asserts there is none.
"""

from __future__ import annotations

import copy
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _inventory_helpers import (
    Project,
    ansible_tool,
    demo_fixture,  # noqa: F401 - fixture
    example_answers,
    project_fixture,  # noqa: F401 - fixture
)
from ansible.parsing.vault import VaultLib
from click.testing import Result

from fedictl import inventory, vault
from fedictl.cli import cli

MAIN = "group_vars/all/main.yml"
VAULT = "group_vars/all/vault.yml"
BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
)


def run(p: Project, *args: str, input: str | None = None) -> Result:
    """A command with exceptions caught, so that a traceback fails the assertion below."""
    result = p.runner.invoke(cli, list(args), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    return result


def validate(p: Project) -> Result:
    return run(p, "validate", "-i", str(p.inventory()))


def refused(result: Result, *needles: str, code: int = 2) -> None:
    """Exit ``code`` with an error saying each of ``needles`` and a fix."""
    assert result.exit_code == code, result.output
    assert "fix: " in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def init_answers(p: Project, text: str | bytes, name: str = "demo") -> Result:
    path = p.root / "answers.yml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return run(p, "init", name, "--answers", str(path))


def nothing_written(p: Project) -> None:
    assert not p.inventory().exists()
    assert not p.password_file().exists()


def init_refused(p: Project, answers: dict[str, Any], *needles: str) -> None:
    """init with ``answers`` exits 2 saying each of ``needles``, and writes nothing."""
    refused(run(p, "init", "demo", "--answers", str(p.write_answers(answers))), *needles)
    nothing_written(p)


def set_main(p: Project, text: str) -> None:
    (p.inventory() / MAIN).write_text(text)


def main_text(p: Project) -> str:
    return (p.inventory() / MAIN).read_text()


def encrypt(p: Project, plaintext: bytes) -> bytes:
    secret = vault.load_secret(p.password_file())
    encrypted: bytes = VaultLib([("default", secret)]).encrypt(plaintext, secret)
    return encrypted


# --- 3. user values are never templates ----------------------------------------------------------

TEMPLATE_PASSWORD = "Pa{#ss#}word{{ 7 * 7 }}"
TEMPLATE_ORG = "Org {{ lookup('pipe', 'id -un') }}"


def init_with_templates(project: Project, monkeypatch: Any) -> None:
    """init with an organisation name and an SMTP password Ansible would run as templates."""
    answers = example_answers()
    answers["org_name"] = TEMPLATE_ORG
    answers["smtp"]["user"] = "mailer"
    monkeypatch.setenv("FEDICTL_SMTP_PASSWORD", TEMPLATE_PASSWORD)
    assert project.init(answers).exit_code == 0


def test_init_writes_every_user_string_unsafe(project: Project, monkeypatch: Any) -> None:
    init_with_templates(project, monkeypatch)
    main = main_text(project)
    assert "fedictl_org_name: !unsafe " in main
    assert "local_domain: !unsafe social.example.test" in main
    assert "redis_db: 1\n" in main  # numbers stay numbers
    hosts = (project.inventory() / inventory.HOSTS).read_text()
    assert "ansible_host: !unsafe " in hosts
    secret = vault.load_secret(project.password_file())
    plaintext = vault.decrypt_text(
        (project.inventory() / VAULT).read_text(), secret, project.inventory() / VAULT
    )
    assert "vault_smtp_password: !unsafe " in plaintext
    assert "vault_redis_password: !unsafe " in plaintext
    # fedictl reads its own files back; validate accepts them
    assert project.main_vars()["fedictl_org_name"] == TEMPLATE_ORG
    assert project.vault_data()["vault_smtp_password"] == TEMPLATE_PASSWORD
    assert validate(project).exit_code == 0


def test_ansible_takes_user_values_verbatim(project: Project, monkeypatch: Any) -> None:
    """The real `ansible` CLI on what `init` wrote: nothing is templated, nothing runs."""
    init_with_templates(project, monkeypatch)
    ansible = ansible_tool("ansible")
    config = project.root / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(config)}
    for var, expected in (
        ("vault_smtp_password", TEMPLATE_PASSWORD),
        ("fedictl_org_name", TEMPLATE_ORG),
        ("fedictl_apps.mastodon.local_domain", "social.example.test"),
    ):
        out = subprocess.run(
            [
                ansible,
                "localhost",
                "-i",
                str(project.inventory() / inventory.HOSTS),
                "--vault-password-file",
                str(project.password_file()),
                "-m",
                "ansible.builtin.debug",
                "-a",
                f"var={var}",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        shown = yaml.safe_dump(expected, default_style='"').strip()
        assert f'"{var}": {shown}' in out.stdout, out.stdout
        assert "Pword49" not in out.stdout and "Org root" not in out.stdout


def test_fedictl_reads_unsafe_and_vault_tags_as_ansible_does() -> None:
    from fedictl import yamlio

    data = yamlio.load(
        "a: !unsafe '{{ x }}'\nb: !unsafe '587'\nc: !unsafe ''\nd: !unsafe [1, '{{ y }}']\n", "t"
    )
    assert data == {"a": "{{ x }}", "b": 587, "c": None, "d": [1, "{{ y }}"]}
    assert yamlio.load(yamlio.dump({"k": "{{ x }}", "n": "587", "e": ""}), "t") == {
        "k": "{{ x }}",
        "n": "587",
        "e": "",
    }


def test_validate_names_a_template_ansible_would_run(demo: Project) -> None:
    set_main(demo, main_text(demo).replace("fedictl_org_name: !unsafe", "fedictl_org_name:", 1))
    template = '\'{{ lookup("pipe", "id") }}\''
    set_main(demo, main_text(demo).replace("Example Collective", template))
    refused(validate(demo), "fedictl_org_name: found a Jinja template", "!unsafe")


def test_upgrade_pin_writes_unsafe_and_reads_it_back(demo: Project, tmp_path: Path) -> None:
    from fedictl import upgrade

    archive = tmp_path / "mastodon-v4.6.6.tar.gz"
    archive.write_bytes(b"x")
    plan = upgrade.Plan("mastodon", "v4.6.5", "v4.6.6", str(archive), "")
    assert upgrade.pin(demo.inventory() / MAIN, plan)
    assert f"release_archive: !unsafe {archive}" in main_text(demo)
    assert demo.main_vars()["fedictl_apps"]["mastodon"]["version"] == "v4.6.6"


@pytest.mark.parametrize("snapshot", ["{{ 7 * 7 }}", "abc def", "a\nb", "run:", "x" * 65])
def test_restore_snapshot_must_be_an_id(demo: Project, snapshot: str) -> None:
    (demo.root / "playbooks" / "restore.yml").write_text("[]\n")
    args = ("--app", "mastodon", "--snapshot", snapshot, "--print-command")
    result = run(demo, "backup", "restore", "-i", str(demo.inventory()), *args)
    refused(result, "--snapshot")
    assert "ansible-playbook" not in result.stdout


def test_restore_snapshot_ids_and_run_ids_pass(demo: Project) -> None:
    (demo.root / "playbooks" / "restore.yml").write_text("[]\n")
    for snapshot in ("4f2a9c1e", "run:20260101T030000Z", "20260101T030000Z"):
        args = ("--app", "mastodon", "--snapshot", snapshot, "--print-command")
        result = run(demo, "backup", "restore", "-i", str(demo.inventory()), *args)
        assert result.exit_code == 0, result.output


def test_upgrade_refuses_an_archive_path_ansible_would_template(
    demo: Project, tmp_path: Path
) -> None:
    archive = tmp_path / "{{ 7 * 7 }}.tar.gz"
    archive.write_bytes(b"x")
    result = run(
        demo, "upgrade", "mastodon", "--to", "v4.7.7", "-i", str(demo.inventory()),
        "--release-archive", str(archive), "--print-command",
    )  # fmt: skip
    refused(result, "--release-archive")


# --- 4. control characters and quotes ------------------------------------------------------------

CONTROL = ["\n", "\r", "\x00", "\x1b", "\x7f", "\u2028"]


def _inject(main: dict[str, Any], vault_data: dict[str, Any], key: str, value: str) -> None:
    if key.startswith("vault_"):
        vault_data[key] = value
        return
    *parents, last = key.split(".")
    node = main
    for part in parents:
        node = node[part]
    node[last] = value


CONTROL_FIELDS = [
    ("fedictl_s3.access_key_id", "AKIA{c}RESTIC_REPOSITORY=/tmp/x"),
    ("vault_s3_secret_access_key", "s3pass{c}LD_PRELOAD=/tmp/x.so"),
    ("fedictl_smtp.user", "mailer{c}x"),
    ("vault_smtp_password", "pass{c}word-long-enough"),
    ("fedictl_org_name", "Example{c}Collective"),
    ("fedictl_apps.mastodon.release_archive", "/srv/a{c}.tar.gz"),
    ("fedictl_acme.email", "admin{c}@example.test"),
]


@pytest.mark.parametrize("char", CONTROL, ids=[f"U+{ord(c):04X}" for c in CONTROL])
@pytest.mark.parametrize(("key", "template"), CONTROL_FIELDS, ids=[k for k, _ in CONTROL_FIELDS])
def test_validate_refuses_control_characters(
    demo: Project, key: str, template: str, char: str
) -> None:
    main, secrets = demo.main_vars(), demo.vault_data()
    main["fedictl_s3"].update(enabled=True, endpoint="https://s3.example.test", bucket="media")
    main["fedictl_s3"].update(region="eu-1", access_key_id="AKIA", public_host="media.example.test")
    secrets["vault_s3_secret_access_key"] = "s3-secret"
    main["fedictl_smtp"]["user"] = "mailer"
    secrets["vault_smtp_password"] = "smtp-password"
    demo.write_main_vars(main)
    demo.write_vault_data(secrets)
    assert validate(demo).exit_code == 0
    _inject(main, secrets, key, template.format(c=char))
    demo.write_main_vars(main)
    demo.write_vault_data(secrets)
    result = validate(demo)
    refused(result, f"{key}: found a")
    line = next(x for x in result.stderr.splitlines() if f"{key}: found a" in x)
    assert "control character" in line or "line break" in line, line
    if key.startswith("vault_"):
        assert template.format(c=char)[:6] not in result.output


@pytest.mark.parametrize(
    ("key", "mutate"),
    [
        ("s3.access_key_id", lambda a: a["s3"].update(access_key_id="AK\nRESTIC_REPOSITORY=/x")),
        ("s3.secret_access_key", lambda a: a["s3"].update(secret_access_key="s\nLD_PRELOAD=x")),
        ("smtp.user", lambda a: a["smtp"].update(user="mail\rer")),
        ("smtp.password", lambda a: a["smtp"].update(user="m", password="p\x00w")),
        ("org_name", lambda a: a.update(org_name="Org\x1b[2J")),
    ],
)
def test_init_refuses_control_characters_and_writes_nothing(
    project: Project, key: str, mutate: Any
) -> None:
    answers = example_answers()
    answers["s3"] = {
        "enabled": True,
        "endpoint": "https://s3.example.test",
        "public_host": "media.example.test",
        "bucket": "media",
        "region": "eu-1",
        "access_key_id": "AKIA",
        "secret_access_key": "s3-secret",
    }
    mutate(answers)
    init_refused(project, answers, f"answers.yml: {key}: found a")


@pytest.mark.parametrize("quote", ["'", '"'])
@pytest.mark.parametrize("key", ["fedictl_smtp.user", "vault_smtp_password"])
def test_validate_refuses_quotes_in_smtp_credentials(demo: Project, key: str, quote: str) -> None:
    main, secrets = demo.main_vars(), demo.vault_data()
    main["fedictl_smtp"]["user"] = "mailer"
    secrets["vault_smtp_password"] = "smtp-password"
    _inject(main, secrets, key, f"it{quote}s")
    demo.write_main_vars(main)
    demo.write_vault_data(secrets)
    refused(validate(demo), f"{key}: found a quote")


# --- robustness: no traceback, a clear error -----------------------------------------------------


def _inline_vault(p: Project, value: str) -> str:
    secret = vault.load_secret(p.password_file())
    cipher = vault.encrypt_text(value, secret)
    return "!vault |\n" + "".join(f"    {line}\n" for line in cipher.splitlines())


def test_inline_vault_values_are_decrypted_and_checked(demo: Project) -> None:
    text = main_text(demo)
    good = _inline_vault(demo, "Vaulted Collective")
    set_main(demo, text.replace("fedictl_org_name: !unsafe Example Collective\n", "") +
             f"fedictl_org_name: {good}")  # fmt: skip
    assert validate(demo).exit_code == 0, validate(demo).output
    bad = _inline_vault(demo, "not-an-email")
    set_main(demo, main_text(demo).replace("fedictl_admin_email: !unsafe admin@example.test\n", "")
             + f"fedictl_admin_email: {bad}")  # fmt: skip
    refused(validate(demo), "fedictl_admin_email: found 'not-an-email'")


def test_inline_vault_value_that_cannot_be_decrypted_is_named(demo: Project) -> None:
    other = demo.root / "other.pass"
    other.write_text("another password\n")
    cipher = vault.encrypt_text("x", vault.load_secret(other))
    block = "!vault |\n" + "".join(f"    {line}\n" for line in cipher.splitlines())
    set_main(demo, main_text(demo).replace("fedictl_org_name: !unsafe Example Collective\n", "")
             + f"fedictl_org_name: {block}")  # fmt: skip
    refused(validate(demo), "fedictl_org_name: found an inline !vault value")


def test_non_utf8_answers_file(project: Project) -> None:
    result = init_answers(project, b"org_name: Caf\xe9\n")
    refused(result, "answers.yml: (whole file): found bytes that are not UTF-8")
    nothing_written(project)


@pytest.mark.parametrize("rel", [inventory.HOSTS, MAIN])
def test_non_utf8_inventory_file(demo: Project, rel: str) -> None:
    path = demo.inventory() / rel
    path.write_bytes(path.read_bytes() + b"fedictl_x: caf\xe9\n")
    refused(validate(demo), f"{path}: (whole file): found bytes that are not UTF-8")


def test_deeply_nested_answers(project: Project) -> None:
    refused(init_answers(project, "org_name: " + "[" * 5000 + "]" * 5000 + "\n"), "org_name")
    nothing_written(project)


def test_deeply_nested_inventory(demo: Project) -> None:
    set_main(demo, main_text(demo) + "fedictl_x: " + "[" * 3000 + "]" * 3000 + "\n")
    refused(validate(demo), "fedictl_x", "nest")


def test_port_with_a_superscript_digit(project: Project) -> None:
    answers = example_answers()
    answers["servers"][0]["port"] = "2²"
    init_refused(project, answers, "servers[0].port")


def test_integer_of_5000_digits(project: Project) -> None:
    text = yaml.safe_dump(example_answers()).replace("port: 22", "port: " + "9" * 5000)
    refused(init_answers(project, text), "servers[0].port", "digits")
    nothing_written(project)


def test_integer_of_5000_digits_in_the_inventory(demo: Project) -> None:
    set_main(demo, main_text(demo).replace("web_port: 3000", "web_port: " + "9" * 5000))
    refused(validate(demo), "fedictl_apps.mastodon.web_port", "digits")


def test_ca_file_that_is_a_device(project: Project) -> None:
    answers = example_answers()
    answers["acme"]["ca_file"] = "/dev/zero"
    init_refused(project, answers, "acme.ca_file")


CORRUPT_VAULTS: dict[str, Any] = {
    "garbage": lambda p: b"$ANSIBLE_VAULT;1.1;AES256\nzz-not-hex\n",
    "random-bytes": lambda p: bytes(range(256)) * 2,
    "unknown-cipher": lambda p: b"$ANSIBLE_VAULT;1.1;AES512\n3132333435\n",
    "non-utf8-plaintext": lambda p: encrypt(p, b"vault_x: \xff\xfe\n"),
    "plaintext-not-yaml": lambda p: encrypt(p, b"vault_x: [unclosed\n"),
    "plaintext-alias-bomb": lambda p: encrypt(p, BOMB.encode()),
}


@pytest.mark.parametrize("command", ["show", "list", "ensure", "validate"])
@pytest.mark.parametrize("kind", CORRUPT_VAULTS)
def test_corrupted_vault_is_a_clear_error(demo: Project, kind: str, command: str) -> None:
    path = demo.inventory() / VAULT
    path.write_bytes(CORRUPT_VAULTS[kind](demo))
    before = path.read_bytes()
    args = ["show", "redis_password"] if command == "show" else [command]
    if command != "validate":
        args = ["secrets", *args]
    result = run(demo, *args, "-i", str(demo.inventory()))
    assert result.exit_code in (1, 2), result.output
    assert f"{path}" in result.stderr and "fix: " in result.stderr, result.stderr
    assert "YAML syntax" not in result.stderr or kind == "plaintext-not-yaml", result.stderr
    assert path.read_bytes() == before


def test_vault_with_an_unknown_cipher_says_so(demo: Project) -> None:
    (demo.inventory() / VAULT).write_bytes(CORRUPT_VAULTS["unknown-cipher"](demo))
    result = validate(demo)
    refused(result, "AES512")
    assert "YAML syntax" not in result.stderr


def test_vault_that_is_a_directory(demo: Project) -> None:
    path = demo.inventory() / VAULT
    path.unlink()
    path.mkdir()
    result = validate(demo)
    refused(result, f"{path}: (whole file): found a directory")
    assert "missing" not in result.stderr and "vault_redis_password" not in result.stderr


def test_unencrypted_vault_is_refused(demo: Project) -> None:
    data = demo.vault_data()
    (demo.inventory() / VAULT).write_text(yaml.safe_dump(data))
    refused(validate(demo), f"{demo.inventory() / VAULT}: (whole file): found an unencrypted")
    assert data["vault_redis_password"] not in validate(demo).output


def test_check_ca_file_that_is_not_a_certificate(demo: Project) -> None:
    bogus = demo.root / "not-a-cert.pem"
    bogus.write_text("hello\n")
    result = run(
        demo, "check", "-i", str(demo.inventory()), "--ca-file", str(bogus), "--skip", "host"
    )
    refused(result, "--ca-file", code=3)


def test_empty_ssh_key_file(project: Project) -> None:
    empty = project.root / "empty.pub"
    empty.write_text("")
    answers = example_answers()
    del answers["admin_ssh_keys"]
    path = project.write_answers(answers)
    result = run(project, "init", "demo", "--answers", str(path), "--admin-ssh-key", str(empty))
    refused(result, "empty.pub")
    nothing_written(project)


@pytest.mark.parametrize("where", ["answers", "main", "hosts", "host_vars"])
def test_alias_bomb_is_refused_at_once(project: Project, where: str) -> None:
    start = time.monotonic()
    if where == "answers":
        answers = example_answers()
        del answers["admin_ssh_keys"]
        keys = "".join(f"  - {line.split(': ', 1)[1]}\n" for line in BOMB.splitlines())
        result = init_answers(project, yaml.safe_dump(answers) + "admin_ssh_keys:\n" + keys)
        nothing_written(project)
    else:
        assert project.init().exit_code == 0
        target = {
            "main": project.inventory() / MAIN,
            "hosts": project.inventory() / inventory.HOSTS,
            "host_vars": project.inventory() / "host_vars" / "lab1.yml",
        }[where]
        target.parent.mkdir(exist_ok=True)
        text = target.read_text() if target.exists() else ""
        if where == "hosts":
            target.write_text(text + "bomb:\n  vars:\n" + "".join(f"    {x}" for x in
                              BOMB.splitlines(keepends=True)))  # fmt: skip
        else:
            target.write_text(text + BOMB)
        result = validate(project)
    assert time.monotonic() - start < 20
    refused(result, "alias")


def test_aliases_refused_and_named(project: Project) -> None:
    answers = yaml.safe_dump(example_answers()).replace(
        "org_name: Example Collective", "org_name: &n Example Collective\nx_copy: *n"
    )
    refused(init_answers(project, answers), "answers.yml: org_name: found a YAML anchor")


# --- validation gaps -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["localhost", "all", "ungrouped", "database", "mastodon", "web"])
def test_reserved_server_names_are_refused_by_init(project: Project, name: str) -> None:
    answers = example_answers()
    answers["servers"][0]["name"] = name
    init_refused(project, answers, "servers", "Ansible")


def test_reserved_server_name_is_refused_by_validate(demo: Project) -> None:
    hosts = demo.inventory() / inventory.HOSTS
    hosts.write_text(hosts.read_text().replace("lab1", "localhost"))
    refused(validate(demo), "hosts.localhost: found a name Ansible reserves")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("db_name", "postgres"),
        ("db_name", "template0"),
        ("db_name", "template1"),
        ("db_user", "postgres"),
        ("db_user", "pg_monitor"),
        ("db_user", "public"),
        ("db_name", "user"),
        ("db_user", "select"),
    ],
)
def test_names_postgresql_reserves_are_refused(demo: Project, field: str, value: str) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["peertube"][field] = value
    demo.write_main_vars(main)
    refused(validate(demo), f"fedictl_apps.peertube.{field}: found '{value}'", "PostgreSQL")


@pytest.mark.parametrize("version", ["v04.06.05", "v4.6.5-rc.", "v4.6.5-rc.1", "v4.6"])
def test_mastodon_versions_its_role_refuses(demo: Project, version: str) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["mastodon"]["version"] = version
    demo.write_main_vars(main)
    refused(validate(demo), "fedictl_apps.mastodon.version")


def test_mastodon_version_pattern_is_the_roles() -> None:
    from fedictl.apps import mastodon

    roles = Path(__file__).resolve().parent.parent / "roles"
    role_vars = yaml.safe_load((roles / "mastodon" / "vars" / "main.yml").read_text())
    assert mastodon.APP.version_pattern == role_vars["__mastodon_version_pattern"]


@pytest.mark.parametrize("version", ["v04.06.05", "v8.2.1-rc.", "v8.2.1-"])
def test_other_versions_without_leading_zeros_or_dangling_suffix(
    demo: Project, version: str
) -> None:
    main = demo.main_vars()
    main["fedictl_apps"]["peertube"]["version"] = version
    demo.write_main_vars(main)
    refused(validate(demo), "fedictl_apps.peertube.version")


@pytest.mark.parametrize(
    ("key", "value"),
    [("acme", [1]), ("acme", "letsencrypt"), ("backup", 5), ("smtp", "none")],
)
def test_wrong_typed_sections_are_refused_not_replaced(
    project: Project, key: str, value: Any
) -> None:
    answers = example_answers()
    answers[key] = value
    init_refused(project, answers, f"answers.yml: {key}: found")


def test_wrong_typed_retention_is_refused_not_replaced(project: Project) -> None:
    answers = example_answers()
    answers["backup"]["retention"] = "daily"
    init_refused(project, answers, "answers.yml: backup.retention: found")


@pytest.mark.parametrize(
    "args",
    [
        ("deploy", "--limit", ""),
        ("deploy", "--tags", " "),
        ("upgrade", "mastodon", "--to", "v4.7.7", "--limit", ""),
    ],
)
def test_empty_limit_or_tags_is_refused(demo: Project, args: tuple[str, ...]) -> None:
    result = run(demo, *args, "-i", str(demo.inventory()), "--print-command")
    assert result.exit_code == 2, result.output
    assert "ansible-playbook" not in result.stdout
    assert "--limit" in result.stderr or "--tags" in result.stderr


@pytest.mark.parametrize("action", ["run", "list", "restore"])
def test_backup_print_command_names_a_report_dir_that_exists(demo: Project, action: str) -> None:
    for name in ("backup", "restore"):
        (demo.root / "playbooks" / f"{name}.yml").write_text("[]\n")
    extra = ("--app", "mastodon") if action == "restore" else ()
    result = run(demo, "backup", action, "-i", str(demo.inventory()), *extra, "--print-command")
    assert result.exit_code == 0, result.output
    import json
    import shlex

    argv = shlex.split(result.stdout.strip().splitlines()[-1])
    report_dir = Path(json.loads(argv[argv.index("-e") + 1])["fedictl_report_dir"])
    assert report_dir.is_dir()
    assert str(report_dir) in result.stderr  # the note says to remove it afterwards
    assert report_dir.stat().st_mode & 0o777 == 0o700
    report_dir.rmdir()


def test_upgrade_of_an_empty_app_name(demo: Project) -> None:
    result = run(demo, "upgrade", "", "--to", "v4.7.7", "-i", str(demo.inventory()))
    refused(result, "APP ''", "mastodon")


def test_answers_inline_vault_without_a_password_is_named(project: Project) -> None:
    other = project.root / "p.pass"
    other.write_text("pw\n")
    cipher = vault.encrypt_text("secret", vault.load_secret(other))
    text = yaml.safe_dump(copy.deepcopy(example_answers()))
    text = text.replace("user: ''", "user: mailer\n  password: !vault |\n" + "".join(
        f"    {line}\n" for line in cipher.splitlines()).rstrip("\n"))  # fmt: skip
    refused(init_answers(project, text), "smtp.password", "!vault")
    nothing_written(project)


# --- found by tests/test_fuzz_inputs.py ----------------------------------------------------------


def test_var_file_that_is_a_device_is_refused_unread(demo: Project) -> None:
    """Ansible would read /dev/zero until memory ran out."""
    (demo.inventory() / "group_vars" / "all" / "zero.yml").symlink_to("/dev/zero")
    start = time.monotonic()
    refused(validate(demo), "zero.yml: (whole file): found a device")
    assert time.monotonic() - start < 20


def test_surrogate_escape_init_would_write_and_ansible_refuse(project: Project) -> None:
    text = yaml.safe_dump(example_answers()).replace(
        "org_name: Example Collective", 'org_name: "\\ud835\\udfd8"'
    )
    refused(init_answers(project, text), "answers.yml: org_name: found a \\u escape")
    nothing_written(project)


@pytest.mark.parametrize("value", ["!!timestamp x", "!!int abc", "!!bool maybe"])
def test_yaml_tag_that_cannot_hold_its_value(project: Project, value: str) -> None:
    text = yaml.safe_dump(example_answers()).replace("port: 587", f"port: {value}")
    refused(init_answers(project, text), "answers.yml: smtp.port: found a value its tag")
    nothing_written(project)


@pytest.mark.parametrize(
    "args",
    [
        ("validate", "-i", "x" * 5000),
        ("validate", "-i", "INV", "--vault-password-file", "bad\x00path"),
        ("upgrade", "mastodon", "--to", "v4.7.7", "-i", "INV", "--release-archive", "a\x00b"),
    ],
)
def test_paths_the_system_refuses(demo: Project, args: tuple[str, ...]) -> None:
    args = tuple(str(demo.inventory()) if a == "INV" else a for a in args)
    result = run(demo, *args)
    assert result.exit_code == 2, result.output


def test_ensure_keeps_a_hand_written_template_as_ansible_reads_it(demo: Project) -> None:
    """Rewriting the vault never turns a value Ansible templates into a literal one."""
    secret = vault.load_secret(demo.password_file())
    path = demo.inventory() / VAULT
    plaintext = vault.decrypt_text(path.read_text(), secret, path)
    plaintext = plaintext.replace("vault_redis_password: !unsafe", "vault_old: !unsafe", 1)
    plaintext += "vault_mine: \"{{ lookup('env', 'HOME') }}\"\n"
    path.write_text(vault.encrypt_text(plaintext, secret))
    result = run(demo, "secrets", "ensure", "-i", str(demo.inventory()))
    assert result.exit_code == 0, result.output
    rewritten = vault.decrypt_text(path.read_text(), secret, path)
    assert "vault_mine: '{{ lookup(''env'', ''HOME'') }}'" in rewritten
    assert "vault_redis_password: !unsafe " in rewritten


def test_ca_file_path_with_a_nul_byte(project: Project) -> None:
    answers = example_answers()
    answers["acme"]["ca_file"] = "ca\x00.pem"
    init_refused(project, answers, "acme.ca_file")
