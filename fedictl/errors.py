"""Errors raised by fedictl's core modules.

Core code raises these and never calls ``sys.exit``; ``fedictl.cli`` turns them into a clear
message and an exit code in one place.
"""

from __future__ import annotations

import re

# Characters that end or break a line in a line-oriented file (.env, restic.env, systemd units)
# or for Python's str.splitlines (which the roles' checks use): C0 controls, DEL, C1 controls and
# the Unicode line and paragraph separators.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def segment(key: object) -> str:
    """A key as one readable path segment: odd keys (spaces, control characters) quoted."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else repr(key)


def shown(text: object) -> str:
    """``text`` for a one-line message: as typed, or quoted when it holds a control character."""
    value = str(text)
    return repr(value) if CONTROL_RE.search(value) else value


class FedictlError(Exception):
    """A failure the user can act on. The message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(FedictlError):
    """Bad input: a value or combination the user gave cannot be used (exit 2)."""

    exit_code = 2


class ValidationError(UsageError):
    """An inventory or answers file is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LabError(FedictlError):
    """Lab hosts could not be started, reached or stopped."""


class MissingToolError(FedictlError):
    """A program fedictl needs is not installed on this machine."""


def os_error_message(exc: OSError) -> str:
    """An error the system gave for a path (too long, not permitted) as a message naming the
    path and the fix; ``fedictl.cli`` shows it for any the commands did not expect."""
    where = f"{shown(exc.filename)}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}; fix: check the path and its permissions"
