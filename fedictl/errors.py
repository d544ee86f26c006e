"""Errors raised by fedictl's core modules.

Core code raises these and never calls ``sys.exit``; ``fedictl.cli`` turns them into a clear
message and an exit code in one place.
"""

from __future__ import annotations


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
