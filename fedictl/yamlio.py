"""fedictl's YAML: files read with bounds and without aliases; strings written so Ansible never
templates them.

Reading. ``read_text`` reads a regular file of at most ``MAX_BYTES`` and insists on UTF-8;
``load`` parses with ``Loader``, a ``yaml.SafeLoader`` that refuses what would let a few bytes
cost minutes or gigabytes before any check runs: anchors and aliases (``&a``/``*a``: nine lines of
them expand to 387 million items), nesting deeper than ``MAX_DEPTH`` and integers of more than
``MAX_DIGITS`` digits. It reads Ansible's own tags as Ansible does: ``!unsafe`` is the value
itself (resolved as if it were untagged, so ``!unsafe '587'`` is the number 587, as in Ansible),
and ``!vault`` is decrypted with the vault password when one is given, else kept as ``Vaulted``.
Every refusal is a ``YamlError`` naming the file, the key path, what was found and the fix.

Writing. ``dump`` writes each string Ansible would read as a string as ``!unsafe``: Ansible then
never renders it as a template, so a password like ``Pa{#ss#}word{{ lookup('pipe', 'id') }}``
reaches the roles as typed. Strings that would read back as something else (``'587'``, ``''``,
``'true'``) cannot hold a template and are written quoted, untagged, because Ansible resolves a
``!unsafe`` scalar as if it were plain. A string read without ``!unsafe`` that holds template
syntax is kept as ``Templated`` and written back untagged, so rewriting a file (``fedictl secrets
ensure``) never changes what Ansible makes of a value.
"""

from __future__ import annotations

import copy
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.parsing.vault import VaultLib, VaultSecret
from yaml.nodes import MappingNode, Node, ScalarNode

from fedictl.errors import CONTROL_RE, UsageError, segment, shown

MAX_BYTES = 4 * 1024 * 1024  # an inventory or answers file is a few KiB
MAX_DEPTH = 64
MAX_DIGITS = 30
_INT = "tag:yaml.org,2002:int"
_STR = "tag:yaml.org,2002:str"
_TEMPLATE_RE = re.compile(r"\{[{%#]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_UTF8_FIX = "save the file as UTF-8 text"


class YamlError(UsageError):
    """A file fedictl refuses to read: the file, the key path, what was found, the fix."""

    def __init__(self, file: str, key: str, found: str, fix: str) -> None:
        self.file, self.key, self.found, self.fix = file, key, found, fix
        super().__init__(f"{shown(file)}: {key}: found {found}; fix: {fix}")


@dataclass(frozen=True)
class Vaulted:
    """An inline ``!vault`` value read without the vault password: its ciphertext only."""

    ciphertext: str

    def __repr__(self) -> str:
        return "an inline !vault value"


class Templated(str):
    """A string read without ``!unsafe`` that holds template syntax: Ansible would render it."""

    __slots__ = ()


def is_template(value: str) -> bool:
    """True when Ansible would read ``value`` as a template (``{{``, ``{%`` or ``{#``)."""
    return _TEMPLATE_RE.search(value) is not None


def control_character(value: str) -> str | None:
    """What makes ``value`` unfit for a line-oriented file ('a line break (\\n)'), or None."""
    match = CONTROL_RE.search(value)
    if match is None:
        return None
    char = match.group()
    if char in "\n\r\u2028\u2029\x0b\x0c\x1c\x1d\x1e\x85":
        return f"a line break ({char!r})"
    return f"a control character (U+{ord(char):04X})"


# --- reading -------------------------------------------------------------------------------------


def read_bytes(path: Path, limit: int = MAX_BYTES, fix: str = "") -> bytes:
    """The bytes of regular file ``path``, at most ``limit``; YamlError naming the problem."""
    where = str(path)
    fix = fix or "point at the file fedictl wrote, or correct the path"
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise YamlError(where, "(whole file)", "a directory", fix)
        if not stat.S_ISREG(info.st_mode):
            raise YamlError(where, "(whole file)", "a device, pipe or socket, not a file", fix)
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        found = f"a file that cannot be read ({exc.strerror})"
        raise YamlError(where, "(whole file)", found, fix) from None
    except ValueError:  # a NUL byte in the path
        raise YamlError(where, "(whole file)", "a path with a NUL byte", fix) from None
    if len(data) > limit:
        raise YamlError(where, "(whole file)", f"a file of more than {limit} bytes", fix)
    return data


def decode(data: bytes, where: str, fix: str = _UTF8_FIX) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        found = f"bytes that are not UTF-8 (0x{data[exc.start]:02x} at byte {exc.start})"
        raise YamlError(where, "(whole file)", found, fix) from None


def read_text(path: Path, limit: int = MAX_BYTES, fix: str = "") -> str:
    """The UTF-8 text of regular file ``path`` (at most ``limit`` bytes)."""
    return decode(read_bytes(path, limit, fix), str(path))


class Loader(yaml.SafeLoader):
    """SafeLoader without anchors or aliases, with bounded depth and integers, reading Ansible's
    ``!unsafe`` and ``!vault`` tags (see the module docstring)."""

    def __init__(self, stream: str, file: str, secret: VaultSecret | None = None) -> None:
        super().__init__(stream)
        self.file = file
        self.secret = secret
        self._path: list[str] = []
        self._where: dict[int, str] = {}  # id(node) -> key path, for errors at construction
        self.unsafe_depth = 0  # > 0 while constructing a value tagged !unsafe

    def key(self) -> str:
        text = "".join(p if p.startswith("[") else f".{p}" for p in self._path).lstrip(".")
        return text or "(whole file)"

    def refuse(self, found: str, fix: str, mark: yaml.Mark | None = None) -> YamlError:
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return YamlError(self.file, self.key(), found + at, fix)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if isinstance(index, int):
            self._path.append(f"[{index}]")
        elif isinstance(parent, MappingNode):
            key = index.value if isinstance(index, ScalarNode) else "(a key)"
            self._path.append(segment(key))
        event = self.peek_event()  # type: ignore[no-untyped-call]
        try:
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise self.refuse(
                    "a YAML anchor or alias (&name, *name)",
                    "write each value out in full: fedictl reads no aliases, which can expand "
                    "without bound",
                    event.start_mark,
                )
            if len(self._path) > MAX_DEPTH:
                raise self.refuse(
                    f"values nested more than {MAX_DEPTH} levels deep",
                    "flatten it: no fedictl setting nests that deep",
                    event.start_mark,
                )
            node: Node | None = super().compose_node(parent, index)
            if node is not None:
                self._where[id(node)] = self.key()
            if isinstance(node, ScalarNode):
                self._check_scalar(node)
            return node
        finally:
            if isinstance(index, int) or isinstance(parent, MappingNode):
                self._path.pop()

    def _check_scalar(self, node: ScalarNode) -> None:
        if _SURROGATE_RE.search(node.value):
            raise self.refuse(
                "a \\u escape of half a character (a UTF-16 surrogate)",
                "write the character itself, or its \\U escape (\\U0001D7D8)",
                node.start_mark,
            )
        plain = node.tag == _INT or (node.tag == "!unsafe" and node.style is None)
        long = len(node.value) > MAX_DIGITS
        if plain and long and self._resolve_plain(node.value) == _INT:
            raise self.refuse(
                f"a number of {len(node.value)} digits",
                f"write a number of at most {MAX_DIGITS} digits",
                node.start_mark,
            )

    def _resolve_plain(self, value: str) -> str:
        """The tag an untagged plain scalar ``value`` gets (as Ansible resolves ``!unsafe``)."""
        tag: str = self.resolve(ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        return tag

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """As SafeLoader's, with a value its tag cannot hold (``!!int abc``, ``!!timestamp x``)
        refused by key rather than raised as the constructor's own error."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError):
            raise YamlError(
                self.file,
                self._where.get(id(node), "(whole file)"),
                f"a value its tag {node.tag.replace('tag:yaml.org,2002:', '!!')} cannot hold "
                f"(line {node.start_mark.line + 1})",
                "correct the value, or remove the tag",
            ) from None

    def decrypt(self, node: ScalarNode) -> str | Vaulted:
        key = self._where.get(id(node), "(whole file)")
        ciphertext = str(self.construct_scalar(node))
        if self.secret is None:
            return Vaulted(ciphertext)
        try:
            return decrypt(ciphertext, self.secret)
        except ValueError:
            raise YamlError(
                self.file,
                key,
                "an inline !vault value this vault password cannot decrypt",
                "encrypt it again with `ansible-vault encrypt_string` and the password file "
                "fedictl uses (--vault-password-file)",
            ) from None


def decrypt(ciphertext: str, secret: VaultSecret) -> str:
    """The text of an inline ``!vault`` value; ValueError if ``secret`` cannot open it."""
    try:
        plaintext: bytes = VaultLib([("default", secret)]).decrypt(ciphertext)
        return plaintext.decode("utf-8")
    except (AnsibleError, TypeError) as exc:  # (a bad envelope, non-UTF-8 text: ValueError)
        raise ValueError(str(exc)) from None


def _construct_unsafe(loader: Loader, node: Node) -> Any:
    """As Ansible: the value resolved as if untagged (so ``!unsafe '587'`` is 587)."""
    copied = copy.copy(node)
    copied.tag = loader.resolve(type(node), node.value, (True, False))  # type: ignore[no-untyped-call]
    loader.unsafe_depth += 1
    try:
        return loader.construct_object(copied, deep=True)
    finally:
        loader.unsafe_depth -= 1


def _construct_vault(loader: Loader, node: Node) -> str | Vaulted:
    if not isinstance(node, ScalarNode):
        raise loader.refuse(
            "a !vault tag on a list or mapping",
            "put !vault on a single encrypted string (ansible-vault encrypt_string)",
            node.start_mark,
        )
    return loader.decrypt(node)


def _construct_str(loader: Loader, node: Node) -> str:
    value = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    return Templated(value) if not loader.unsafe_depth and is_template(value) else value


Loader.add_constructor("!unsafe", _construct_unsafe)
Loader.add_constructor("!vault", _construct_vault)
Loader.add_constructor("!vault-encrypted", _construct_vault)
Loader.add_constructor(_STR, _construct_str)


def load(text: str, file: str, secret: VaultSecret | None = None) -> Any:
    """The data in YAML ``text`` from ``file`` (named in errors); YamlError if refused."""
    loader = None
    try:
        loader = Loader(text, file, secret)  # its reader refuses some characters at once
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        found = f"invalid YAML: {exc.problem or exc.context}{where}"
        raise YamlError(file, "(whole file)", found, "correct the YAML syntax") from None
    except yaml.YAMLError as exc:
        found = "invalid YAML: " + " ".join(str(exc).replace('"<unicode string>", ', "").split())
        raise YamlError(file, "(whole file)", found, "correct the YAML syntax") from None
    except RecursionError:
        raise YamlError(
            file, "(whole file)", "values nested too deeply", "flatten the file"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: Path, secret: VaultSecret | None = None) -> Any:
    return load(read_text(path), str(path), secret)


# --- writing -------------------------------------------------------------------------------------


_RESOLVER = yaml.resolver.Resolver()


class _Unsafe(str):
    __slots__ = ()


class Dumper(yaml.SafeDumper):
    """Block style with list items indented under their key (as yamllint and ansible-lint
    expect), no anchors, and ``_Unsafe`` strings tagged ``!unsafe``."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def choose_scalar_style(self) -> str:
        """Plain style for a ``!unsafe`` string that reads back unchanged without quotes."""
        event = self.event
        if isinstance(event, yaml.ScalarEvent) and event.tag == "!unsafe" and not event.style:
            if self.analysis is None:
                self.analysis = self.analyze_scalar(event.value)
            analysis = self.analysis
            if (
                not self.flow_level
                and analysis.allow_block_plain
                and not analysis.empty
                and not analysis.multiline
            ):
                return ""
        style: str = super().choose_scalar_style()
        return style


def _represent_unsafe(dumper: Dumper, value: _Unsafe) -> ScalarNode:
    return dumper.represent_scalar("!unsafe", str(value))


def _represent_plain(dumper: Dumper, value: str) -> ScalarNode:
    return dumper.represent_str(str(value))


Dumper.add_representer(_Unsafe, _represent_unsafe)
Dumper.add_representer(Templated, _represent_plain)


def _mark(data: Any) -> Any:
    """``data`` with each string value (not key) that Ansible would read as a string unsafe."""
    if isinstance(data, dict):
        return {key: _mark(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_mark(value) for value in data]
    plain_tag = _RESOLVER.resolve(ScalarNode, data, (True, False)) if type(data) is str else ""  # type: ignore[no-untyped-call]
    if plain_tag == _STR:
        return _Unsafe(data)
    return data


def dump(data: Any) -> str:
    """``data`` as block-style YAML, user strings tagged ``!unsafe`` (see the module docstring)."""
    text: str = yaml.dump(
        _mark(data),
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return text


def dump_scalar(value: str) -> str:
    """One string as ``dump`` writes it, for a line edit (``key: <this>``)."""
    return dump(value).removesuffix("\n...\n").strip()
