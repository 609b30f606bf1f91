"""Files that a manager and an agent on the same host both know how to find."""

from __future__ import annotations

import os
from pathlib import Path


def runtime_dir() -> Path:
    """Per-user directory for local discovery files (CORRAL_RUNTIME_DIR, XDG_RUNTIME_DIR, or ~/.corral)."""
    explicit = os.environ.get("CORRAL_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "corral"
    return Path.home() / ".corral" / "run"


def local_join_token_path(port: int) -> Path:
    """Where a manager listening on ``port`` leaves its join token for agents on the same host."""
    return runtime_dir() / f"join-token-{port}"
