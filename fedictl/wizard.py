"""The ``fedictl init`` wizard: its questions, merging answers, and writing the inventory.

Answers come from a file, from flags, from the environment (secrets) and, when interactive, from
a ``Prompter`` the command provides; unanswered keys take their defaults. The questions about an
app are the ones its module declares (``fedictl/apps/``). Imports no click.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ansible.parsing.vault import VaultSecret

from fedictl import apps, inventory, paths, secrets, vault, yamlio
from fedictl.errors import FedictlError, UsageError, ValidationError
from fedictl.inventory import Problem
from fedictl.model import LETSENCRYPT, ROLES, answers_key, from_answers
from fedictl.validate import check

SMTP_PASSWORD_ENV = "FEDICTL_SMTP_PASSWORD"  # noqa: S105 - a variable name
S3_SECRET_ENV = "FEDICTL_S3_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name

Answers = dict[str, Any]


def get_path(answers: Answers, path: str) -> Any:
    """The value at a dotted ``path`` (``smtp.port``), or None."""
    node: Any = answers
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def set_path(answers: Answers, path: str, value: Any) -> None:
    """Set the value at a dotted ``path``, making missing mappings on the way. A part that holds
    something else (``acme: [1]``) is left as it is, for the model to report."""
    *parents, last = path.split(".")
    node = answers
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            return
        node = child
    node[last] = value


def _enabled(app: str) -> Callable[[Answers], bool]:
    return lambda a: isinstance(a.get("apps"), dict) and app in a["apps"]


def _first_domain(a: Answers) -> str:
    for app in apps.registered():
        if value := get_path(a, f"apps.{app.name}.{app.domain}"):
            return str(value)
    return "example.org"


def _s3_enabled(a: Answers) -> bool:
    return get_path(a, "s3.enabled") is True


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


_BEFORE_APPS: tuple[Question, ...] = (
    Question("org_name", "--org-name", "Organisation name"),
    Question("admin_email", "--admin-email", "Admin e-mail address"),
)
_AFTER_APPS: tuple[Question, ...] = (
    Question("smtp.host", "--smtp-host", "SMTP server host"),
    Question("smtp.port", "--smtp-port", "SMTP port", _const(587), int),
    Question("smtp.tls", "--smtp-tls", "SMTP TLS mode (starttls, tls, none)", _const("starttls")),
    Question("smtp.user", "--smtp-user", "SMTP login (empty: no authentication)", _const("")),
    Question(
        "smtp.password",
        "",
        "SMTP password",
        _const(""),
        when=lambda a: bool(get_path(a, "smtp.user")),
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
    Question("s3.endpoint", "--s3-endpoint", "S3 endpoint URL (https://...)", when=_s3_enabled),
    Question("s3.bucket", "--s3-bucket", "S3 bucket", when=_s3_enabled),
    Question("s3.region", "--s3-region", "S3 region", _const("us-east-1"), when=_s3_enabled),
    Question("s3.access_key_id", "--s3-access-key-id", "S3 access key id", when=_s3_enabled),
    Question(
        "s3.public_host",
        "--s3-public-host",
        "Domain media are served from (a CDN, or this server; empty: AWS's own URLs)",
        _const(""),
        when=_s3_enabled,
    ),
    Question(
        "s3.secret_access_key",
        "",
        "S3 secret access key",
        when=_s3_enabled,
        secret_env=S3_SECRET_ENV,
    ),
)


def _app_questions(app: apps.App) -> list[Question]:
    return [
        Question(
            f"apps.{app.name}.{q.setting}",
            q.flag,
            q.prompt,
            None if q.default is None else _const(q.default),
            when=_enabled(app.name),
        )
        for q in app.questions
    ]


def questions() -> tuple[Question, ...]:
    """Every question, in the order they are asked: the apps' between the organisation's."""
    declared = [q for app in apps.registered() for q in _app_questions(app)]
    return (*_BEFORE_APPS, *declared, *_AFTER_APPS)


SERVER_FLAGS = {
    "name": "--server-name",
    "address": "--server-address",
    "user": "--ssh-user",
    "port": "--ssh-port",
    "identity_file": "--ssh-identity-file",
}


def param(flag: str) -> str:
    """The parameter name of a flag (``--smtp-host`` → ``smtp_host``)."""
    return flag.lstrip("-").replace("-", "_")


def public_key(value: str) -> str:
    """A public key given as itself or as the path of a .pub file (its first line)."""
    path = Path(value).expanduser()
    if value.endswith(".pub") and paths.exists(path):
        fix = "give the .pub file ssh-keygen wrote (e.g. ~/.ssh/id_ed25519.pub)"
        lines = yamlio.read_text(path, 64 * 1024, fix).strip().splitlines()
        if not lines:
            raise yamlio.YamlError(str(path), "(whole file)", "an empty file", fix)
        return lines[0]
    return value.strip()


def read_answers(path: Path | None, secret: VaultSecret | None = None) -> Answers:
    """The answers in ``path``; inline ``!vault`` values decrypted with ``secret`` if given."""
    if path is None:
        return {}
    data = yamlio.load(yamlio.read_text(path), str(path), secret)
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


# --- asking ------------------------------------------------------------------------------------


class Prompter(Protocol):
    """Asks the person at the terminal (the command implements it with click)."""

    def ask(self, text: str, default: Any = None, kind: type = str, secret: bool = False) -> Any:
        """An answer of type ``kind``; a ``secret`` one is typed hidden and defaults to ''."""
        ...

    def confirm(self, text: str, default: bool) -> bool: ...


def _ask_apps(answers: Answers, prompter: Prompter) -> None:
    names = apps.names()
    raw = prompter.ask(f"Apps to enable ({', '.join(names)})", names[0])
    answers["apps"] = {name.strip(): {} for name in str(raw).split(",") if name.strip()}


def _ask_admin_keys(answers: Answers, prompter: Prompter) -> None:
    default = Path("~/.ssh/id_ed25519.pub").expanduser()
    raw = prompter.ask(
        "Admin SSH public key, or a .pub file (password logins get switched off)",
        str(default) if default.is_file() else None,
    )
    answers["admin_ssh_keys"] = [public_key(str(raw))]


def _ask_servers(name: str, answers: Answers, prompter: Prompter) -> None:
    servers: list[dict[str, Any]] = []
    while True:
        number = len(servers) + 1
        servers.append(
            {
                "name": prompter.ask(f"Server {number}: inventory name", f"{name}{number}"),
                "address": prompter.ask(f"Server {number}: address (IP or DNS name)"),
                "user": prompter.ask(f"Server {number}: SSH user", "root"),
                "port": prompter.ask(f"Server {number}: SSH port", 22, int),
            }
        )
        if not prompter.confirm("Add another server?", default=False):
            break
    answers["servers"] = servers
    if len(servers) > 1 and not prompter.confirm("Everything on the first server?", default=True):
        for role in ROLES:
            chosen = prompter.ask(f"Host for {role}", servers[0]["name"])
            set_path(answers, f"placement.{role}", chosen)


def _ask(question: Question, answers: Answers, prompter: Prompter) -> Any:
    if question.secret_env:
        return prompter.ask(question.prompt, secret=True)
    default = question.default(answers) if question.default else None
    return prompter.ask(question.prompt, default, question.kind)


def collect(
    name: str, answers: Answers, flags: dict[str, Any], prompter: Prompter | None
) -> Answers:
    """Merge answers file, flags and (with a prompter) prompts; unanswered keys get defaults."""
    if flags.get("app"):
        current = answers.get("apps")
        chosen: dict[str, Any] = current if isinstance(current, dict) else {}
        answers["apps"] = {a: chosen.get(a) or {} for a in flags["app"]}
    elif "apps" not in answers and prompter:
        _ask_apps(answers, prompter)
    if flags.get("admin_ssh_key"):
        answers["admin_ssh_keys"] = [public_key(k) for k in flags["admin_ssh_key"]]
    elif "admin_ssh_keys" not in answers and prompter:
        _ask_admin_keys(answers, prompter)
    server = {k: flags[param(f)] for k, f in SERVER_FLAGS.items() if flags.get(param(f))}
    if server:
        server.setdefault("name", f"{name}1")
        answers["servers"] = [server]
    elif "servers" not in answers and prompter:
        _ask_servers(name, answers, prompter)
    for role in ROLES:
        if flags.get(f"{role}_host"):
            set_path(answers, f"placement.{role}", flags[f"{role}_host"])
    if flags.get("s3") is not None:
        set_path(answers, "s3.enabled", flags["s3"])
    elif prompter and get_path(answers, "s3.enabled") is None:
        media = prompter.confirm("Store media in S3-compatible storage?", default=False)
        set_path(answers, "s3.enabled", media)
    asked = questions()
    for q in asked:
        value = flags.get(param(q.flag)) if q.flag else None
        if value is None and q.secret_env:
            value = os.environ.get(q.secret_env) or None
        if value is not None:
            set_path(answers, q.path, value)
    for q in asked:
        if get_path(answers, q.path) is not None or not q.when(answers):
            continue
        if prompter:
            set_path(answers, q.path, _ask(q, answers, prompter))
        elif q.default is not None:
            set_path(answers, q.path, q.default(answers))
    return answers


# --- writing -----------------------------------------------------------------------------------


def display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def target(name: str, force: bool) -> Path:
    """The directory ``fedictl init NAME`` writes; UsageError if it is taken and not forced."""
    inventory.check_name(name)
    path = paths.project_root() / "inventories" / name
    if path.exists() and any(path.iterdir()) and not force:
        raise UsageError(
            f"{display(path)} already exists; fix: choose another NAME, "
            "or pass --force to rewrite it (its secrets are kept)"
        )
    return path


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


def _existing_vault(path: Path, password_file: Path) -> dict[str, Any]:
    vault_file = path / inventory.VAULT
    if not vault_file.exists():
        return {}
    if not password_file.is_file():
        raise FedictlError(
            f"{vault_file} exists but {password_file} does not; refusing to replace its secrets; "
            "fix: pass --vault-password-file for that vault, or delete the inventory yourself"
        )
    try:
        return vault.read_vault(vault_file, vault.load_secret(password_file))
    except (vault.VaultError, yamlio.YamlError) as exc:
        raise FedictlError(f"{exc}; refusing to replace secrets that cannot be read") from exc


@dataclass(frozen=True)
class Written:
    """What ``write`` wrote, and the vault password file it used."""

    paths: list[Path]
    password_file: Path
    created: bool  # the password file is new


def write(
    path: Path,
    answers: Answers,
    source: str,
    password_file: Path,
    force: bool = False,
) -> Written:
    """Build the model from ``answers``, generate the missing secrets, validate, then write the
    inventory at ``path`` and its vault.

    With ``force``, the secrets of the vault already at ``path`` are kept. Nothing is written
    (inventory or password file) unless the result is valid; ValidationError names each problem
    by its answers key, as found in ``source``.
    """
    org = from_answers(answers, source)
    existing = _existing_vault(path, password_file) if force else {}
    provided = {
        k: v for k, v in org.provided_secrets().items() if v or secrets.is_missing(existing.get(k))
    }
    merged = existing | provided
    merged |= secrets.ensure(merged, set(org.apps))
    problems = check(inventory.from_model(path, org, merged))
    if problems:
        raise ValidationError([_as_answers(p, source) for p in problems])
    created = not password_file.exists()
    if created:
        vault.create_password_file(password_file)
    written = inventory.write(path, org, merged, vault.load_secret(password_file))
    return Written(written, password_file, created)
