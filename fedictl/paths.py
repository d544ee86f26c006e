"""Where fedictl finds its own files (playbooks, roles) and keeps its state."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The checkout holding playbooks/ and roles/ (overridable with FEDICTL_ROOT)."""
    return Path(os.environ.get("FEDICTL_ROOT", PROJECT_ROOT))


def is_file(path: Path) -> bool:
    """``path.is_file()``, and False for a path the system refuses (too long, a NUL byte)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def exists(path: Path) -> bool:
    """``path.exists()``, and False for a path the system refuses (too long, a NUL byte)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def config_dir() -> Path:
    """Per-user configuration (vault password files live here, outside any repository)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fedictl"


def lab_dir() -> Path:
    """Lab state: cached base image, per-host overlays, keys (root-owned; FEDICTL_LAB_DIR)."""
    return Path(os.environ.get("FEDICTL_LAB_DIR", "/var/lib/fedictl/lab"))
