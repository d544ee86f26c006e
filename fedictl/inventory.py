"""Write an inventory directory from the model, and load one exactly as Ansible will.

Loading uses ansible-core in-process: ``InventoryManager`` parses ``hosts.yml`` and
``VariableManager`` merges ``group_vars``/``host_vars`` (vault files decrypted with the same
password file ``deploy`` passes to ansible-playbook), so validate sees the values the playbooks
will see, with Ansible's precedence. Each file is first read on its own by ``fedictl.yamlio``
(UTF-8, no aliases, bounded nesting and numbers; a vault decrypted by ``fedictl.vault``), so a
file Ansible would choke on, or spend minutes and gigabytes on, is refused before Ansible reads
it, naming the file and key; and so a finding can name the file a key comes from. Inline
``!vault`` values are decrypted with the same password. A string Ansible would render as a
template (not written ``!unsafe``) comes out as ``yamlio.Templated``, for validate to name.

Writing goes through ``yamlio.dump``: every user string is ``!unsafe`` (never templated).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import EncryptedString, VaultHelper, VaultSecret, is_encrypted
from ansible.template import is_trusted_as_template
from ansible.vars.manager import VariableManager

from fedictl import apps, paths, secrets, vault, yamlio
from fedictl.errors import UsageError, segment, shown
from fedictl.model import Organisation

HOSTS = "hosts.yml"
MAIN = "group_vars/all/main.yml"
VAULT = "group_vars/all/vault.yml"
_VAR_EXTENSIONS = ("", ".yml", ".yaml", ".json")
_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VAR_FIX = "use letters, digits and '_', not starting with a digit"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

HEADER = {
    HOSTS: "# Hosts and their roles, written by `fedictl init`. Check edits: `fedictl validate`.\n",
    MAIN: "# Organisation settings (docs/inventory.md). Check edits with `fedictl validate`.\n",
}


def check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"inventory name {name!r} is not usable; fix: use lowercase letters, digits, '-' "
            "and '_', starting with a letter or digit"
        )


def resolve(given: str) -> Path:
    """The inventory directory for ``-i``: a directory, its hosts.yml, or inventories/NAME."""
    path = Path(given)
    try:
        if path.is_file() and path.name == HOSTS:
            return path.parent
        if path.is_dir():
            return path
        by_name = paths.project_root() / "inventories" / given
        if given and "/" not in given and by_name.is_dir():
            return by_name
    except (OSError, ValueError):  # a name too long for the system, a NUL byte
        pass
    raise UsageError(
        f"inventory {given!r} not found; fix: pass the directory `fedictl init` wrote, "
        "e.g. -i inventories/NAME"
    )


def default_password_file(name: str) -> Path:
    return paths.config_dir() / "vault" / f"{name}.pass"


def password_file_for(inventory: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    default = default_password_file(inventory.resolve().name)
    if paths.is_file(default):
        return default
    raise UsageError(
        f"no vault password file for {inventory}: {default} does not exist; "
        "fix: pass --vault-password-file FILE"
    )


# --- writing -----------------------------------------------------------------------------------


def vault_order(data: dict[str, Any]) -> dict[str, Any]:
    """Vault keys in a stable order: generated secrets as ``secrets.specs()`` lists them, then
    the rest sorted."""
    known = [s.key for s in secrets.specs()]
    first = {k: data[k] for k in known if k in data}
    return first | {k: data[k] for k in sorted(data) if k not in first}


def write(
    target: Path, org: Organisation, vault_data: dict[str, Any], secret: VaultSecret
) -> list[Path]:
    """Write hosts.yml, group_vars/all/main.yml and the encrypted vault; return the paths."""
    written = []
    for rel, data in ((HOSTS, org.hosts_yml()), (MAIN, org.main_yml())):
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER[rel] + yamlio.dump(data))
        written.append(path)
    vault.write_vault(target / VAULT, vault_order(vault_data), secret)
    written.append(target / VAULT)
    return written


# --- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding: the file, the key path, what was found, and how to fix it."""

    file: str
    key: str
    found: str
    fix: str

    def __str__(self) -> str:
        return f"{shown(self.file)}: {self.key}: found {self.found}; fix: {self.fix}"


@dataclass
class VarFile:
    scope: str  # "all", "group:<name>" or "host:<name>"
    rel: str  # path relative to the inventory directory
    keys: set[str]


@dataclass
class Inventory:
    """An inventory as Ansible sees it, plus where each variable is defined."""

    path: Path  # as the user gave it (used in messages)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> all its hosts
    group_children: dict[str, list[str]] = field(default_factory=dict)
    hostvars: dict[str, dict[str, Any]] = field(default_factory=dict)
    all_vars: dict[str, Any] = field(default_factory=dict)  # group_vars/all, merged
    inventory_vars: set[str] = field(default_factory=set)  # host/group vars set in hosts.yml
    files: list[VarFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # YAML, vault and parse problems

    def file(self, rel: str) -> str:
        return str(self.path / rel)

    def enabled_apps(self) -> set[str]:
        """The apps enabled for any host (host_vars may override group_vars/all)."""
        return {a for v in self.hostvars.values() for a in apps.enabled(v.get("fedictl_apps"))}

    def source(self, key: str, host: str | None = None) -> str:
        """The file defining top-level variable ``key`` for ``host`` (Ansible's precedence)."""
        top = key.split(".", 1)[0].split("[", 1)[0]
        host_groups = {g for g, members in self.groups.items() if host in members} - {"all"}
        ranked: list[tuple[int, str]] = []
        for f in self.files:
            if top not in f.keys:
                continue
            if f.scope == "all":
                ranked.append((1, f.rel))
            elif f.scope.startswith("group:") and f.scope[6:] in host_groups:
                ranked.append((2, f.rel))
            elif f.scope == f"host:{host}":
                ranked.append((3, f.rel))
        if ranked:
            return self.file(max(ranked)[1])
        if top in self.inventory_vars:
            return self.file(HOSTS)
        return self.file(VAULT if top.startswith("vault_") else MAIN)


def plain(value: Any, secret: VaultSecret | None = None) -> Any:
    """Ansible's tagged/lazy containers and scalars as plain Python values: an inline ``!vault``
    value decrypted with ``secret`` (``yamlio.Vaulted`` if it cannot be), a string Ansible would
    render as a template as ``yamlio.Templated``."""
    if isinstance(value, dict):
        return {str(k): plain(v, secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, secret) for v in value]
    if isinstance(value, EncryptedString):
        ciphertext = str(VaultHelper.get_ciphertext(value, with_tags=False))
        try:
            if secret is None:
                raise ValueError("no vault password")
            return yamlio.decrypt(ciphertext, secret)
        except ValueError:
            return yamlio.Vaulted(ciphertext)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = str(value)
        trusted = is_trusted_as_template(value) and yamlio.is_template(text)
        return yamlio.Templated(text) if trusted else text
    for kind in (int, float):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def _var_files(inv: Path) -> Iterator[tuple[str, Path]]:
    """(scope, file) for every file Ansible's host_group_vars plugin would read."""
    for kind, prefix in (("group_vars", "group"), ("host_vars", "host")):
        base = inv / kind
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            if entry.name.startswith("."):
                continue
            stem, ext = (entry.name, "") if entry.is_dir() else (entry.stem, entry.suffix)
            if ext not in _VAR_EXTENSIONS:
                continue
            scope = "all" if (kind, stem) == ("group_vars", "all") else f"{prefix}:{stem}"
            if not entry.is_dir():
                yield scope, entry  # a device or pipe too: the prescan refuses it
            else:
                for sub in sorted(entry.rglob("*")):
                    if (
                        not sub.is_dir()
                        and sub.suffix in _VAR_EXTENSIONS
                        and not sub.name.startswith(".")
                    ):
                        yield scope, sub


def _loader(secret: VaultSecret | None) -> DataLoader:
    loader = DataLoader()
    if secret is not None:
        loader.set_vault_secrets([("default", secret)])
    return loader


def _load_problem(inv: Inventory, rel: str, exc: Exception) -> Problem:
    text = exc.message if isinstance(exc, AnsibleError) else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if "vault" in text.lower() or "decrypt" in text.lower():
        return Problem(
            inv.file(rel),
            "(whole file)",
            f"a vault this password cannot decrypt ({first})",
            "pass --vault-password-file naming the password file init wrote",
        )
    return Problem(inv.file(rel), "(whole file)", first, "correct the YAML syntax")


def _structure(inv: Inventory, raw: dict[Any, Any]) -> list[Problem]:
    """Problems in hosts.yml's shape that Ansible would only warn about and then skip."""
    problems: list[Problem] = []

    def add(key: str, found: str, fix: str) -> None:
        problems.append(Problem(inv.file(HOSTS), key, found, fix))

    def names(node: dict[Any, Any], key: str) -> None:
        for name in node:
            if not isinstance(name, str) or not name.strip():
                add(f"{key}.{segment(name)}", "an unusable name", "use a text name")

    def variables(node: dict[Any, Any], key: str) -> None:
        for name in node:
            if not (isinstance(name, str) and _VAR_RE.fullmatch(name)):
                add(f"{key}.{segment(name)}", "an invalid variable name", _VAR_FIX)

    def group(node: object, key: str) -> None:
        if node is None:
            return
        if not isinstance(node, dict):
            add(key, f"a {type(node).__name__}", "make it a mapping of hosts, children, vars")
            return
        for part, value in node.items():
            sub = f"{key}.{segment(part)}"
            if part not in ("hosts", "children", "vars"):
                add(sub, "an unknown key", "use only hosts, children and vars in a group")
            elif value is not None and not isinstance(value, dict):
                add(sub, f"a {type(value).__name__}", "make it a mapping")
            elif part == "hosts" and value:
                names(value, sub)
                for host, host_vars in value.items():
                    if host_vars is not None and not isinstance(host_vars, dict):
                        add(
                            f"{sub}.{segment(host)}",
                            f"a {type(host_vars).__name__}",
                            "give the host a mapping of variables, or {}",
                        )
                    elif host_vars:
                        variables(host_vars, f"{sub}.{segment(host)}")
            elif part == "vars" and value:
                variables(value, sub)
            elif part == "children" and value:
                names(value, sub)
                for child, child_node in value.items():
                    group(child_node, f"{sub}.{segment(child)}")

    names(raw, "(top level)")
    for name, node in raw.items():
        group(node, segment(name))
    return problems


def _vault_file(inv: Inventory) -> list[Problem]:
    """The vault must be the one encrypted file ``fedictl init`` writes."""
    path = inv.path / VAULT
    fix = "make it the encrypted file `fedictl init` writes (`ansible-vault encrypt FILE`)"
    if path.is_dir():
        return [Problem(inv.file(VAULT), "(whole file)", "a directory", fix)]
    if not path.is_file():
        return []
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        return [Problem(inv.file(VAULT), "(whole file)", f"unreadable ({exc.strerror})", fix)]
    if not is_encrypted(head):
        found = "an unencrypted file (its secrets are readable by anyone who reads the file)"
        fix = (
            "encrypt it: `ansible-vault encrypt --vault-password-file PASSWORD_FILE "
            f"{inv.file(VAULT)}`"
        )
        return [Problem(inv.file(VAULT), "(whole file)", found, fix)]
    return []


def _prescan(inv: Inventory, file: Path, secret: VaultSecret | None) -> Problem | None:
    """A problem in ``file`` that fedictl refuses before Ansible reads it, or None."""
    try:
        text = yamlio.read_text(file)
        if is_encrypted(text):
            if secret is None:
                raise vault.VaultError(
                    file, "an encrypted file", "pass --vault-password-file to decrypt it"
                )
            text = vault.decrypt_text(text, secret, file)
        yamlio.load(text, str(file), secret)
    except (yamlio.YamlError, vault.VaultError) as exc:
        key = exc.key if isinstance(exc, yamlio.YamlError) else "(whole file)"
        return Problem(str(file), key, exc.found, exc.fix)
    return None


def load(path: Path, secret: VaultSecret | None) -> Inventory:
    """Load the inventory at ``path``. Problems are collected in ``Inventory.problems``."""
    inv = Inventory(path=path)
    hosts_file = path / HOSTS
    if not hosts_file.is_file():
        inv.problems.append(
            Problem(
                inv.file(HOSTS),
                "(whole file)",
                "nothing",
                "run `fedictl init` or point -i at an inventory directory",
            )
        )
        return inv
    try:
        raw = yamlio.load(yamlio.read_text(hosts_file), inv.file(HOSTS), secret)
    except yamlio.YamlError as exc:
        inv.problems.append(Problem(exc.file, exc.key, exc.found, exc.fix))
        return inv
    if not isinstance(raw, dict) or not isinstance(raw.get("all"), dict):
        inv.problems.append(
            Problem(
                inv.file(HOSTS),
                "all",
                f"a {type(raw).__name__}",
                "start hosts.yml with an `all:` mapping (docs/inventory.md)",
            )
        )
        return inv

    inv.problems += _structure(inv, raw) + _vault_file(inv)
    if inv.problems:
        return inv

    loader = _loader(secret)
    for scope, file in _var_files(path):
        rel = str(file.relative_to(path))
        refused = _prescan(inv, file, secret)
        if refused is not None:
            inv.problems.append(refused)
            continue
        try:
            data = loader.load_from_file(str(file), cache="none")
        except (AnsibleError, UnicodeDecodeError) as exc:
            inv.problems.append(_load_problem(inv, rel, exc))
            continue
        if data is None:
            data = {}
        if not isinstance(data, dict):
            inv.problems.append(
                Problem(
                    inv.file(rel),
                    "(whole file)",
                    f"a {type(data).__name__}",
                    "make the file a mapping of variable names to values",
                )
            )
            continue
        bad = [k for k in data if not (isinstance(k, str) and _VAR_RE.fullmatch(k))]
        for key in bad:
            inv.problems.append(
                Problem(inv.file(rel), segment(key), "an invalid variable name", _VAR_FIX)
            )
        if bad:
            continue
        inv.files.append(VarFile(scope, rel, {str(k) for k in data}))
        if scope == "all":
            inv.all_vars.update(plain(data, secret))
    if inv.problems:
        return inv

    try:
        manager = InventoryManager(loader=loader, sources=[str(hosts_file)])
        variables = VariableManager(loader=loader, inventory=manager)
        for group in manager.groups.values():
            inv.groups[group.name] = sorted(h.name for h in group.get_hosts())
            inv.group_children[group.name] = sorted(g.name for g in group.child_groups)
            inv.inventory_vars.update(str(k) for k in group.get_vars())
        for host in manager.get_hosts():
            inv.inventory_vars.update(str(k) for k in host.get_vars())
            host_vars = variables.get_vars(host=host, include_hostvars=False)
            inv.hostvars[host.name] = plain(host_vars, secret)
    except AnsibleError as exc:
        inv.problems.append(_load_problem(inv, HOSTS, exc))
    return inv


def from_model(path: Path, org: Organisation, vault_data: dict[str, Any]) -> Inventory:
    """The Inventory that ``write`` followed by ``load`` yields, built without touching disk.

    ``init`` validates this before writing anything, with the same checks ``validate`` runs.
    """
    main = org.main_yml()
    fediverse = org.hosts_yml()["all"]["children"]["fediverse"]
    inv = Inventory(path=path, all_vars=main | vault_data)
    inv.files = [VarFile("all", MAIN, set(main)), VarFile("all", VAULT, set(vault_data))]
    inv.inventory_vars = {"ansible_host", "ansible_user", "ansible_port"}
    names = list(fediverse["hosts"])
    inv.groups = {"all": sorted(names), "fediverse": sorted(names)}
    for group, data in fediverse["children"].items():
        inv.groups[group] = sorted(data.get("hosts", {}))
    for name, connection in fediverse["hosts"].items():
        inv.hostvars[name] = main | vault_data | connection
    return inv
