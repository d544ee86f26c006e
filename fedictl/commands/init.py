"""``fedictl init NAME``: describe the organisation once and write a valid, vaulted inventory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from fedictl import inventory, paths, secrets, vault
from fedictl.errors import FedictlError, UsageError, ValidationError
from fedictl.inventory import Problem
from fedictl.model import APPS, LETSENCRYPT, ROLES, answers_key, from_answers
from fedictl.validate import check

SMTP_PASSWORD_ENV = "FEDICTL_SMTP_PASSWORD"  # noqa: S105 - a variable name
S3_SECRET_ENV = "FEDICTL_S3_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name

Answers = dict[str, Any]


def _get(answers: Answers, path: str) -> Any:
    node: Any = answers
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(answers: Answers, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = answers
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _enabled(app: str) -> Callable[[Answers], bool]:
    return lambda a: isinstance(a.get("apps"), dict) and app in a["apps"]


def _first_domain(a: Answers) -> str:
    for path in ("apps.mastodon.local_domain", "apps.peertube.domain", "apps.pixelfed.domain"):
        if value := _get(a, path):
            return str(value)
    return "example.org"


@dataclass(frozen=True)
class Question:
    """One answers key: its flag, its prompt, its default (None: required) and when it applies."""

    path: str
    flag: str
    prompt: str
    default: Callable[[Answers], Any] | None = None
    kind: type = str
    when: Callable[[Answers], bool] = lambda a: True
    secret_env: str | None = None  # secrets come from the answers file, this env var or a prompt


def _const(value: Any) -> Callable[[Answers], Any]:
    return lambda a: value


QUESTIONS: tuple[Question, ...] = (
    Question("org_name", "--org-name", "Organisation name"),
    Question("admin_email", "--admin-email", "Admin e-mail address"),
    Question(
        "apps.mastodon.local_domain",
        "--mastodon-domain",
        "Mastodon LOCAL_DOMAIN (handle domain; can never change)",
        when=_enabled("mastodon"),
    ),
    Question(
        "apps.mastodon.web_domain",
        "--mastodon-web-domain",
        "Mastodon WEB_DOMAIN (empty: same as LOCAL_DOMAIN)",
        _const(""),
        when=_enabled("mastodon"),
    ),
    Question(
        "apps.peertube.domain", "--peertube-domain", "PeerTube domain", when=_enabled("peertube")
    ),
    Question(
        "apps.pixelfed.domain", "--pixelfed-domain", "Pixelfed domain", when=_enabled("pixelfed")
    ),
    Question("smtp.host", "--smtp-host", "SMTP server host"),
    Question("smtp.port", "--smtp-port", "SMTP port", _const(587), int),
    Question("smtp.tls", "--smtp-tls", "SMTP TLS mode (starttls, tls, none)", _const("starttls")),
    Question("smtp.user", "--smtp-user", "SMTP login (empty: no authentication)", _const("")),
    Question(
        "smtp.password",
        "",
        "SMTP password",
        _const(""),
        when=lambda a: bool(_get(a, "smtp.user")),
        secret_env=SMTP_PASSWORD_ENV,
    ),
    Question(
        "smtp.from_address",
        "--smtp-from",
        "Sender address",
        lambda a: f"notifications@{_first_domain(a)}",
    ),
    Question(
        "acme.email",
        "--acme-email",
        "ACME (Let's Encrypt) account e-mail",
        lambda a: a.get("admin_email"),
    ),
    Question("acme.directory_url", "--acme-directory", "ACME directory URL", _const(LETSENCRYPT)),
    Question(
        "backup.repository",
        "--backup-repository",
        "restic backup repository (e.g. sftp:user@host:/srv/restic/NAME)",
    ),
    Question("backup.retention.daily", "--keep-daily", "Daily snapshots to keep", _const(7), int),
    Question(
        "backup.retention.weekly", "--keep-weekly", "Weekly snapshots to keep", _const(4), int
    ),
    Question(
        "backup.retention.monthly", "--keep-monthly", "Monthly snapshots to keep", _const(12), int
    ),
    Question(
        "s3.endpoint",
        "--s3-endpoint",
        "S3 endpoint URL (https://...)",
        when=lambda a: _get(a, "s3.enabled") is True,
    ),
    Question("s3.bucket", "--s3-bucket", "S3 bucket", when=lambda a: _get(a, "s3.enabled") is True),
    Question(
        "s3.region",
        "--s3-region",
        "S3 region",
        _const("us-east-1"),
        when=lambda a: _get(a, "s3.enabled") is True,
    ),
    Question(
        "s3.access_key_id",
        "--s3-access-key-id",
        "S3 access key id",
        when=lambda a: _get(a, "s3.enabled") is True,
    ),
    Question(
        "s3.secret_access_key",
        "",
        "S3 secret access key",
        when=lambda a: _get(a, "s3.enabled") is True,
        secret_env=S3_SECRET_ENV,
    ),
)
SERVER_FLAGS = {
    "name": "--server-name",
    "address": "--server-address",
    "user": "--ssh-user",
    "port": "--ssh-port",
    "identity_file": "--ssh-identity-file",
}


def _public_key(value: str) -> str:
    """A public key given as itself or as the path of a .pub file."""
    path = Path(value).expanduser()
    if value.endswith(".pub") and path.is_file():
        return path.read_text().strip().splitlines()[0]
    return value.strip()


def _ask_admin_keys(answers: Answers) -> None:
    default = Path("~/.ssh/id_ed25519.pub").expanduser()
    raw = click.prompt(
        "Admin SSH public key, or a .pub file (password logins get switched off)",
        default=str(default) if default.is_file() else None,
        err=True,
    )
    answers["admin_ssh_keys"] = [_public_key(str(raw))]


def _param(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _read_answers(path: Path | None) -> Answers:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(
            f"{path}: cannot be read as YAML ({' '.join(str(exc).split())}); "
            "fix: correct the file (see examples/answers.yml)"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(
            [
                f"{path}: (whole file): found a {type(data).__name__}; "
                "fix: write a mapping like examples/answers.yml"
            ]
        )
    return data


def _ask(question: Question, answers: Answers) -> Any:
    default = question.default(answers) if question.default else None
    if question.secret_env:
        return click.prompt(
            question.prompt, default="", hide_input=True, show_default=False, err=True
        )
    return click.prompt(question.prompt, default=default, type=question.kind, err=True)


def _ask_apps(answers: Answers) -> None:
    raw = click.prompt(f"Apps to enable ({', '.join(APPS)})", default="mastodon", err=True)
    answers["apps"] = {name.strip(): {} for name in str(raw).split(",") if name.strip()}


def _ask_servers(name: str, answers: Answers) -> None:
    servers: list[dict[str, Any]] = []
    while True:
        number = len(servers) + 1
        servers.append(
            {
                "name": click.prompt(
                    f"Server {number}: inventory name", default=f"{name}{number}", err=True
                ),
                "address": click.prompt(f"Server {number}: address (IP or DNS name)", err=True),
                "user": click.prompt(f"Server {number}: SSH user", default="root", err=True),
                "port": click.prompt(f"Server {number}: SSH port", default=22, type=int, err=True),
            }
        )
        if not click.confirm("Add another server?", default=False, err=True):
            break
    answers["servers"] = servers
    if len(servers) > 1 and not click.confirm(
        "Everything on the first server?", default=True, err=True
    ):
        for role in ROLES:
            _set(
                answers,
                f"placement.{role}",
                click.prompt(f"Host for {role}", default=servers[0]["name"], err=True),
            )


def collect(name: str, answers: Answers, flags: dict[str, Any], interactive: bool) -> Answers:
    """Merge answers file, flags and (if interactive) prompts; unanswered keys get defaults."""
    if flags.get("app"):
        current = answers.get("apps")
        apps: dict[str, Any] = current if isinstance(current, dict) else {}
        answers["apps"] = {a: apps.get(a) or {} for a in flags["app"]}
    elif "apps" not in answers and interactive:
        _ask_apps(answers)
    if flags.get("admin_ssh_key"):
        answers["admin_ssh_keys"] = [_public_key(k) for k in flags["admin_ssh_key"]]
    elif "admin_ssh_keys" not in answers and interactive:
        _ask_admin_keys(answers)
    server = {k: flags[_param(f)] for k, f in SERVER_FLAGS.items() if flags.get(_param(f))}
    if server:
        server.setdefault("name", f"{name}1")
        answers["servers"] = [server]
    elif "servers" not in answers and interactive:
        _ask_servers(name, answers)
    for role in ROLES:
        if flags.get(f"{role}_host"):
            _set(answers, f"placement.{role}", flags[f"{role}_host"])
    if flags.get("s3") is not None:
        _set(answers, "s3.enabled", flags["s3"])
    elif interactive and _get(answers, "s3.enabled") is None:
        _set(
            answers,
            "s3.enabled",
            click.confirm("Store media in S3-compatible storage?", default=False, err=True),
        )
    for q in QUESTIONS:
        value = flags.get(_param(q.flag)) if q.flag else None
        if value is None and q.secret_env:
            value = os.environ.get(q.secret_env) or None
        if value is not None:
            _set(answers, q.path, value)
    for q in QUESTIONS:
        if _get(answers, q.path) is not None or not q.when(answers):
            continue
        if interactive:
            _set(answers, q.path, _ask(q, answers))
        elif q.default is not None:
            _set(answers, q.path, q.default(answers))
    return answers


def _as_answers(problem: Problem, source: str) -> str:
    key = problem.key
    if key.startswith("hosts."):
        key = "servers." + key.removeprefix("hosts.").replace("ansible_host", "address").replace(
            "ansible_user", "user"
        ).replace("ansible_port", "port")
    elif key.startswith("all.children.fediverse.children."):
        key = "placement." + key.rsplit(".", 1)[1]
    else:
        key = answers_key(key)
    return f"{source}: {key}: found {problem.found}; fix: {problem.fix}"


def _existing_vault(target: Path, password_file: Path) -> dict[str, Any]:
    path = target / inventory.VAULT
    if not path.exists():
        return {}
    if not password_file.is_file():
        raise FedictlError(
            f"{path} exists but {password_file} does not; refusing to replace its secrets; "
            "fix: pass --vault-password-file for that vault, or delete the inventory yourself"
        )
    try:
        return vault.read_vault(path, vault.load_secret(password_file))
    except vault.VaultError as exc:
        raise FedictlError(f"{exc}; refusing to replace secrets that cannot be read") from exc


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    for q in reversed(QUESTIONS):
        if q.flag:
            func = click.option(
                q.flag, type=q.kind, default=None, help=f"{q.prompt} [answers: {q.path}]"
            )(func)
    for key, flag in reversed(SERVER_FLAGS.items()):
        func = click.option(
            flag,
            type=int if key == "port" else str,
            default=None,
            help=f"Single server: {key} [answers: servers]",
        )(func)
    for role in reversed(ROLES):
        func = click.option(
            f"--{role}-host",
            default=None,
            help=f"Server name for {role} [answers: placement.{role}]",
        )(func)
    return func


@click.command("init")
@click.argument("name")
@click.option(
    "--answers",
    "answers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file with the answers (see examples/answers.yml).",
)
@click.option("--no-input", is_flag=True, help="Never prompt; unanswered keys take defaults.")
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite an existing inventory (its secrets are kept, never rotated).",
)
@click.option(
    "--vault-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Existing vault password file (default: a new one in the user's config dir).",
)
@click.option(
    "--app",
    "app",
    multiple=True,
    type=click.Choice(APPS),
    help="Enable an app (repeatable) [answers: apps]",
)
@click.option(
    "--s3/--no-s3", default=None, help="Media in S3-compatible storage [answers: s3.enabled]"
)
@click.option(
    "--admin-ssh-key",
    multiple=True,
    metavar="KEY|FILE.pub",
    help="Admin SSH public key, or its .pub file (repeatable) [answers: admin_ssh_keys]",
)
@_options
def init(
    name: str,
    answers_file: Path | None,
    no_input: bool,
    force: bool,
    vault_password_file: Path | None,
    **flags: Any,
) -> None:
    """Describe the organisation and write inventories/NAME with every secret generated.

    Prompts for anything not given, unless --answers or --no-input is used. Secrets the
    organisation provides are read from the answers file, from FEDICTL_SMTP_PASSWORD /
    FEDICTL_S3_SECRET_ACCESS_KEY, or from a hidden prompt; they are never printed.
    """
    inventory.check_name(name)
    target = paths.project_root() / "inventories" / name
    if target.exists() and any(target.iterdir()) and not force:
        raise UsageError(
            f"{_display(target)} already exists; fix: choose another NAME, "
            "or pass --force to rewrite it (its secrets are kept)"
        )
    interactive = answers_file is None and not no_input
    source = str(answers_file) if answers_file else "answers"
    answers = collect(name, _read_answers(answers_file), flags, interactive)
    org = from_answers(answers, source)

    password_file = vault_password_file or inventory.default_password_file(name)
    existing = _existing_vault(target, password_file) if force else {}
    provided = {
        k: v for k, v in org.provided_secrets().items() if v or secrets.is_missing(existing.get(k))
    }
    merged = existing | provided
    merged |= secrets.ensure(merged, set(org.apps))
    problems = check(inventory.from_model(target, org, merged))
    if problems:
        raise ValidationError([_as_answers(p, source) for p in problems])

    created = not password_file.exists()
    if created:
        vault.create_password_file(password_file)
    written = inventory.write(target, org, merged, vault.load_secret(password_file))
    for path in written:
        click.echo(f"wrote {_display(path)}")
    state = "new, mode 0600" if created else "existing"
    click.echo(f"Vault password file ({state}): {password_file}", err=True)
    click.echo(
        "Keep it safe and out of git: without it the secrets in the vault are lost.", err=True
    )
    click.echo(f"Next: fedictl validate -i {_display(target)}", err=True)
