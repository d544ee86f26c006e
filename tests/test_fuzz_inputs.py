"""Fuzzing at the raw layer: bytes, encodings, aliases, tags, inline vault values, in every field
of every file fedictl reads, and command arguments, through the real CLI (click's CliRunner).

Each example asserts the same contract: no traceback (``result.exception`` is None or
SystemExit), a refusal exits with the command's usage or failure code and every error line says
what to fix, naming the field (or the file and line when the file is no longer YAML), and a
refused input writes nothing. An answers file ``init`` accepts must give an inventory that
``validate`` accepts.

The budget is bounded for CI (the whole file runs in well under a minute on two cores);
FEDICTL_FUZZ_SCALE=10 runs ten times as many examples.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from _inventory_helpers import ANSWERS_FILE
from ansible.parsing.vault import VaultLib
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedictl import inventory, vault
from fedictl.cli import cli

SCALE = int(os.environ.get("FEDICTL_FUZZ_SCALE", "1"))
PASSWORD = "fuzz-test-password\n"


def budget(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )


# --- the base project ----------------------------------------------------------------------------


@dataclass
class Base:
    root: Path  # FEDICTL_ROOT
    config: Path  # XDG_CONFIG_HOME
    inventory: Path
    password: Path
    secrets: list[str]  # every secret value of the base vault (none may ever be printed)
    cipher_ok: str  # an inline !vault value the password opens
    cipher_other: str  # one another password made
    answers: bytes  # the answers the base inventory was made from, every optional key set


def _full_answers(top: Path) -> dict[str, Any]:
    """examples/answers.yml with every optional answer given too (so each is fuzzed)."""
    ca_file = top / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    answers: dict[str, Any] = yaml.safe_load(ANSWERS_FILE.read_text())
    answers["apps"]["mastodon"]["web_domain"] = "mastodon.example.test"
    answers["servers"][0].update(identity_file="~/.ssh/id_ed25519", host_key_checking=True)
    answers["placement"] = {"database": "lab1", "web": "lab1", "mastodon": "lab1"}
    answers["smtp"].update(user="mailer", password="smtp-password")
    answers["acme"]["ca_file"] = str(ca_file)
    answers["s3"] = {
        "enabled": True,
        "endpoint": "https://s3.example.test",
        "public_host": "media.example.test",
        "bucket": "media",
        "region": "eu-1",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "s3-secret-key",
    }
    return answers


# Optional settings the playbooks read, added to main.yml under fedictl_apps.mastodon.
_OPTIONAL = (
    "    release_archive: ''\n    release_archive_checksum: ''\n    ruby_source: !unsafe rbenv\n"
    "    nodejs_source: !unsafe nodesource\n    owner_username: !unsafe admin\n"
    "    db_connections: 20\n"
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    top = tmp_path_factory.mktemp("fuzz")
    root, config = top / "project", top / "config"
    (root / "playbooks").mkdir(parents=True)
    for name in ("site", "mastodon", "upgrade", "backup", "restore"):
        (root / "playbooks" / f"{name}.yml").write_text("[]\n")
    saved = {k: os.environ.get(k) for k in ("FEDICTL_ROOT", "XDG_CONFIG_HOME")}
    os.environ.update(FEDICTL_ROOT=str(root), XDG_CONFIG_HOME=str(config))
    saved_tmp = tempfile.tempdir
    tempfile.tempdir = str(top)  # backup --print-command keeps its report dirs here
    password = top / "vault.pass"
    password.write_text(PASSWORD)
    answers = yaml.safe_dump(_full_answers(top), sort_keys=False).encode()
    (top / "answers.yml").write_bytes(answers)
    runner = CliRunner()
    args = ["--answers", str(top / "answers.yml"), "--vault-password-file", str(password)]
    result = runner.invoke(cli, ["init", "base", *args])
    assert result.exit_code == 0, result.output
    inv = root / "inventories" / "base"
    main = inv / inventory.MAIN
    main.write_text(
        main.read_text().replace(
            "    streaming_port: 4000\n", f"    streaming_port: 4000\n{_OPTIONAL}"
        )
    )
    (inv / "host_vars").mkdir()
    (inv / "host_vars" / "lab1.yml").write_text(
        "fedictl_private_address: !unsafe 10.213.0.10\nfedictl_org_name: !unsafe On lab1\n"
        "fedictl_admin_ssh_keys:\n  - !unsafe ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFBahIfbBc+"
        "SfPjxtKlICqaaoo5IF/64ZzoNBljk4LSl lab1\n"
    )
    valid = runner.invoke(cli, ["validate", "-i", str(inv), "--vault-password-file", str(password)])
    assert valid.exit_code == 0, valid.output
    secret = vault.load_secret(password)
    other = top / "other.pass"
    other.write_text("another password\n")
    data = vault.read_vault(inv / inventory.VAULT, secret)
    data["vault_backup_ssh_private_key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END"
    vault.write_vault(inv / inventory.VAULT, data, secret)
    yield Base(
        root=root,
        config=config,
        inventory=inv,
        password=password,
        secrets=[v for v in data.values() if isinstance(v, str) and len(v) >= 16],
        cipher_ok=vault.encrypt_text("Vaulted text", secret),
        cipher_other=vault.encrypt_text("Vaulted text", vault.load_secret(other)),
        answers=answers,
    )
    tempfile.tempdir = saved_tmp
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_counter = itertools.count()


def fresh_copy(base: Base) -> Path:
    """A copy of the base inventory under inventories/ (so -i NAME and the config dir apply)."""
    target = base.root / "inventories" / f"copy{next(_counter)}"
    shutil.copytree(base.inventory, target)
    return target


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every path under ``roots`` with its bytes (None for a directory)."""
    found: dict[str, bytes | None] = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted([root, *root.rglob("*")]):
            found[str(path)] = None if path.is_dir() or not path.is_file() else path.read_bytes()
    return found


# --- what goes into a field ----------------------------------------------------------------------

# A fragment becomes the value of one key; it may span lines (indented under the key).
Fragment = Callable[[Base, int], bytes]


def _line(text: str | bytes) -> Fragment:
    raw = text.encode() if isinstance(text, str) else text
    return lambda base, indent: raw


def _vault_block(which: str) -> Fragment:
    def make(base: Base, indent: int) -> bytes:
        cipher = {
            "ok": base.cipher_ok,
            "other": base.cipher_other,
            "garbage": "$ANSIBLE_VAULT;1.1;AES256\nzz-not-hex",
            "cipher": "$ANSIBLE_VAULT;1.1;AES512\n3132",
        }[which]
        pad = " " * (indent + 4)
        return ("!vault |\n" + "\n".join(pad + line for line in cipher.splitlines())).encode()

    return make


NASTY = list("\x00\x01\t\n\r\x1b\x7f\x85\u2028\ufeff{}%#'\"\\:-[]&*!|>@`²³٣𝟘 aA0.,")
nasty_text = st.text(alphabet=st.sampled_from(NASTY), min_size=0, max_size=12)

fragments: st.SearchStrategy[Fragment] = st.one_of(
    st.binary(max_size=16).map(_line),
    nasty_text.map(lambda s: _line(json.dumps(s))),  # a double-quoted YAML string
    nasty_text.map(lambda s: _line(s.replace("\n", " "))),  # a plain scalar, maybe not YAML
    st.sampled_from(
        [
            "*a",
            "&a x",
            "&a [1, 2]",
            "[&a 1, *a]",
            "{a: &a 1, b: *a}",
            "!!binary aGVsbG8=",
            "!!python/object/apply:os.system [id]",
            "!foo bar",
            "!!set {a, b}",
            "!!timestamp 2001-12-14",
            "2001-12-14",
            "!unsafe '{{ 7 * 7 }}'",
            "!unsafe 587",
            "!unsafe ''",
            "!unsafe [1, '{{ x }}']",
            '\'{{ lookup("pipe", "id") }}\'',
            "'{# x #}'",
            '"{% if true %}x{% endif %}"',
            "!vault 5",
            "!vault [1]",
            "9" * 19,
            "9" * 31,
            "9" * 5000,
            "-" + "9" * 4400,
            "0x" + "f" * 40,
            "1e999",
            ".nan",
            "~",
            "''",
            "[]",
            "{}",
            "yes",
            "²²",
            "/dev/zero",
            "'/dev/zero'",
            "localhost",
            "postgres",
            "v04.06.05",
            "v4.6.5-rc.",
            "x" * 300,
        ]
    ).map(_line),
    st.sampled_from([50, 64, 65, 200, 3000]).map(lambda n: _line("[" * n + "]" * n)),
    st.sampled_from([64, 65, 3000]).map(lambda n: _line("{a: " * n + "1" + "}" * n)),
    st.sampled_from(["ok", "other", "garbage", "cipher"]).map(_vault_block),
)

_LEAF = re.compile(rb"^(?P<head>(?P<indent> *)(?:- |[^\s:#][^:#]*: ))(?P<value>\S.*)$")


def leaves(text: bytes) -> list[int]:
    """Indexes of the lines holding a scalar value (a key's or a list item's)."""
    return [i for i, line in enumerate(text.split(b"\n")) if _LEAF.match(line)]


def splice(text: bytes, index: int, base: Base, fragment: Fragment) -> tuple[bytes, str]:
    """``text`` with line ``index``'s value replaced; and that line's key (for messages)."""
    lines = text.split(b"\n")
    match = _LEAF.match(lines[index])
    assert match is not None
    lines[index] = match["head"] + fragment(base, len(match["indent"]))
    key = match["head"].strip().removeprefix(b"- ").rstrip(b": ").decode()
    return b"\n".join(lines), key


# --- the contract --------------------------------------------------------------------------------

_ANSIBLE_NOISE = re.compile(r"^\s*(\[WARNING\]|\[DEPRECATION WARNING\]|\[ERROR\]|Origin:|\S*\^)")


def errors(result: Result) -> list[str]:
    return [
        line.removeprefix("Error: ")
        for line in result.stderr.splitlines()
        if line.strip() and not _ANSIBLE_NOISE.match(line)
    ]


def check_contract(
    result: Result, codes: tuple[int, ...], hints: tuple[str, ...], base: Base
) -> None:
    """No traceback; a known exit code; a refusal says what to fix and names a hint."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    assert result.exit_code in (0, *codes), result.output
    if result.exit_code == 0:
        return  # (`secrets show` prints its secret then)
    for secret in base.secrets:
        assert secret not in result.output
    lines = errors(result)
    assert lines, result.stderr
    text = "\n".join(lines)
    if "Usage:" in result.stderr:  # click's own refusal of an argument names it
        assert "Invalid value" in text or "Missing" in text or "No such" in text, text
        return
    assert "fix: " in text, text
    for line in lines:
        if ": found " in line:  # FILE: key: found X; fix: Y
            assert "; fix: " in line, line
    assert any(hint in text for hint in hints), f"none of {hints} in:\n{text}"


# --- every field of every inventory file ---------------------------------------------------------

FILES = (inventory.HOSTS, inventory.MAIN, inventory.VAULT, "host_vars/lab1.yml")
COMMANDS: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = (
    (("validate",), (2,)),
    (("secrets", "list"), (1, 2)),
    (("secrets", "show", "redis_password"), (1, 2)),
    (("secrets", "ensure"), (1, 2)),
    (("deploy", "--print-command"), (1, 2)),
    (("upgrade", "mastodon", "--to", "v4.7.7", "--print-command"), (1, 2)),
    (("backup", "list", "--print-command"), (1, 2)),
    (("check", "--instance", "nowhere.example.test", "--skip", "host"), (3,)),
)
WHOLE_FILE = ["truncate", "empty", "directory", "device", "random"]


def _read(path: Path, secret: Any) -> bytes:
    if path.name == "vault.yml":
        return vault.decrypt_text(path.read_text(), secret, path).encode()
    return path.read_bytes()


def _write(path: Path, data: bytes, secret: Any) -> None:
    if path.name == "vault.yml":
        data = VaultLib([("default", secret)]).encrypt(data, secret)
    path.write_bytes(data)


@budget(250)
@given(data=st.data())
def test_every_field_of_every_inventory_file(base: Base, data: st.DataObject) -> None:
    inv = fresh_copy(base)
    secret = vault.load_secret(base.password)
    rel = data.draw(st.sampled_from(FILES), label="file")
    path = inv / rel
    hints: tuple[str, ...] = (str(path), "(whole file)")
    if data.draw(st.integers(0, 9), label="whole file?") == 0:
        how = data.draw(st.sampled_from(WHOLE_FILE), label="how")
        text = path.read_bytes()
        if how == "truncate":
            path.write_bytes(text[: data.draw(st.integers(0, len(text)), label="at")])
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "directory":
            path.unlink()
            path.mkdir()
        elif how == "device":
            path.unlink()
            path.symlink_to("/dev/zero")
        else:
            path.write_bytes(data.draw(st.binary(max_size=200), label="bytes"))
    else:
        text = _read(path, secret)
        index = data.draw(st.sampled_from(leaves(text)), label="line")
        new, key = splice(text, index, base, data.draw(fragments, label="fragment"))
        _write(path, new, secret)
        hints = (*hints, key, "line ")
        # A finding may land on the setting that depends on this one (vault_smtp_password for
        # fedictl_smtp.user, a collision on the other app's domain): the parent names it too.
        parents = {"fedictl_smtp", "smtp", "mastodon", "peertube", "pixelfed", "fedictl_apps"}
        hints = (*hints, *parents, "vault_", "hosts.", "all.children")
    command, codes = data.draw(st.sampled_from(COMMANDS), label="command")
    hints = (*hints, *(word for word in command if word.startswith("--")))
    before = snapshot(inv)
    result = CliRunner().invoke(
        cli, [*command, "-i", str(inv), "--vault-password-file", str(base.password)]
    )
    check_contract(result, codes, hints, base)
    if result.exit_code != 0 or command[-1] != "ensure":
        assert snapshot(inv) == before, "a refused or read-only command wrote a file"


# --- every field of the answers file -------------------------------------------------------------


@budget(250)
@given(data=st.data())
def test_every_field_of_the_answers_file(base: Base, data: st.DataObject) -> None:
    index = data.draw(st.sampled_from(leaves(base.answers)), label="line")
    text, key = splice(base.answers, index, base, data.draw(fragments, label="fragment"))
    name = f"answers{next(_counter)}"
    answers = base.root / f"{name}.yml"
    answers.write_bytes(text)
    target = base.root / "inventories" / name
    password = base.config / "fedictl" / "vault" / f"{name}.pass"
    result = CliRunner().invoke(cli, ["init", name, "--answers", str(answers)])
    hints = (str(answers), key, "(whole file)", "line ", "smtp", "apps.", "servers", "acme")
    check_contract(result, (2,), hints, base)
    if result.exit_code != 0:
        assert not target.exists() and not password.exists(), "a refused init wrote something"
        return
    checked = CliRunner().invoke(cli, ["validate", "-i", str(target)])
    assert checked.exit_code == 0, f"init accepted what validate refuses:\n{checked.output}"


# --- command arguments ---------------------------------------------------------------------------

ODD_PATHS = ["/dev/zero", "/", "/nonexistent/x", "EMPTY", "NONUTF8", "NOTCERT", "DIR", "{{ x }}"]
arguments = st.one_of(
    nasty_text,
    st.sampled_from(
        ["", " ", "²²", "9" * 5000, "-1", "0", "65536", "nan", "inf", "1e999", "{{ 7*7 }}"]
    ),
    st.sampled_from(ODD_PATHS),
    st.text(max_size=20),
)


def _odd_files(base: Base) -> dict[str, str]:
    top = base.root.parent
    files = {
        "EMPTY": top / "empty.pub",
        "NONUTF8": top / "nonutf8.pub",
        "NOTCERT": top / "notcert.pem",
        "DIR": top / "adir",
    }
    files["EMPTY"].write_text("")
    files["NONUTF8"].write_bytes(b"ssh-ed25519 \xff\xfe\n")
    files["NOTCERT"].write_text("hello\n")
    files["DIR"].mkdir(exist_ok=True)
    return {k: str(v) for k, v in files.items()}


def _command(data: st.DataObject, base: Base) -> tuple[list[str], list[str]]:
    """A command line, and the values drawn for it (an error may name the field by its value)."""
    odd = _odd_files(base)
    drawn: list[str] = []

    def arg(label: str) -> str:
        value = data.draw(arguments, label=label)
        drawn.append(odd.get(value, value))
        return drawn[-1]

    inv = ["-i", str(base.inventory), "--vault-password-file", str(base.password)]
    restore = ["backup", "restore", *inv, "--app", "mastodon", "--print-command"]
    choices: list[Callable[[], list[str]]] = [
        lambda: ["init", arg("name"), "--no-input"],
        lambda: [
            "init",
            f"a{next(_counter)}",
            "--no-input",
            "--answers",
            str(ANSWERS_FILE),
            data.draw(
                st.sampled_from(
                    [
                        "--smtp-port",
                        "--ssh-port",
                        "--server-address",
                        "--mastodon-domain",
                        "--admin-ssh-key",
                        "--keep-daily",
                        "--smtp-user",
                        "--smtp-host",
                        "--acme-email",
                        "--backup-repository",
                        "--server-name",
                        "--database-host",
                        "--app",
                    ]
                )
            ),
            arg("value"),
        ],
        lambda: ["deploy", *inv, "--print-command", "--limit", arg("limit")],
        lambda: ["deploy", *inv, "--print-command", "--tags", arg("tags")],
        lambda: ["deploy", *inv, "--print-command", "--app", arg("app")],
        lambda: ["upgrade", arg("app"), "--to", "v4.7.7", *inv, "--print-command"],
        lambda: ["upgrade", "mastodon", "--to", arg("to"), *inv, "--print-command"],
        lambda: [
            "upgrade",
            "mastodon",
            "--to",
            "v4.7.7",
            *inv,
            "--print-command",
            "--release-archive",
            arg("archive"),
            "--release-checksum",
            arg("sum"),
        ],
        lambda: [*restore, "--snapshot", arg("snapshot")],
        lambda: [*restore, "--to", arg("to")],
        lambda: ["secrets", "show", *inv, arg("key")],
        lambda: ["validate", "-i", arg("inventory")],
        lambda: ["validate", "-i", str(base.inventory), "--vault-password-file", arg("password")],
        lambda: [
            "check",
            *inv,
            "--instance",
            "nowhere.example.test",
            "--skip",
            "host",
            data.draw(
                st.sampled_from(
                    [
                        "--ca-file",
                        "--resolve",
                        "--connect-to",
                        "--timeout",
                        "--account",
                        "--only",
                        "--skip",
                        "--tls-warn-days",
                        "--queue-crit",
                        "--prometheus",
                    ]
                )
            ),
            arg("value"),
        ],
    ]
    return data.draw(st.sampled_from(choices), label="command")(), drawn


@budget(300)
@given(data=st.data())
def test_command_arguments(base: Base, data: st.DataObject) -> None:
    argv, drawn = _command(data, base)
    watched = (base.inventory, base.config / "fedictl" / "vault")
    before = snapshot(*watched)
    listing = set(os.listdir(base.root / "inventories"))
    result = CliRunner().invoke(cli, argv)
    codes = (3,) if argv[0] == "check" else (1, 2)
    hints = (*(a for a in argv if a.startswith("-")), "APP", "NAME", "inventory", "secret")
    hints = (*hints, "answers", *(value for value in drawn if len(value) > 1))
    check_contract(result, codes, hints, base)
    if result.exit_code != 0:
        assert snapshot(*watched) == before, "a refused command wrote a file"
        assert set(os.listdir(base.root / "inventories")) == listing, "a refused init wrote"
