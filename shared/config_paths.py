"""The rule for config file paths of business components, checked by the manager before anything is
written and again by the agent when it writes them (where it also refuses symlinks).

A component's config file ``path`` is where the component sees the file: inside a container the
absolute path, for a process the same path under the component's own files directory. Either way the
path is taken relative to a root the agent owns, so it must not climb out of it.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

MAX_PATH_LENGTH = 1024
"""Longest config file path accepted."""

MAX_CONFIG_FILES = 64
"""Most config files one component may carry."""

MAX_CONFIG_FILE_BYTES = 256 * 1024
"""Largest content of one config file (the whole request is capped by MAX_BODY_BYTES anyway)."""

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A business, component or app id, as the OpenAPI document states it (a JSON Schema, i.e. ECMA-262, pattern)."""
_ID = re.compile(SAFE_ID_PATTERN)


def is_safe_id(value: str) -> bool:
    """Whether ``value`` may name a business or component: it becomes a directory name on agents."""
    # fullmatch: Python's `$` also matches before a final newline, so match() let "web\n" through.
    return bool(_ID.fullmatch(value)) and value not in (".", "..")


def config_relpath(path: str) -> PurePosixPath:
    """``path`` as a relative path under the component's root; raises ValueError saying what is wrong.

    Refused: empty, NUL bytes, longer than MAX_PATH_LENGTH, any ``..`` part, or naming the root itself.
    A leading ``/`` is allowed and dropped (``/etc/app.conf`` -> ``etc/app.conf``).
    """
    if not isinstance(path, str) or not path:
        raise ValueError("path is empty")
    if "\x00" in path:
        raise ValueError("path contains a NUL byte")
    if len(path) > MAX_PATH_LENGTH:
        raise ValueError(f"path is longer than {MAX_PATH_LENGTH} characters")
    parts = [part for part in PurePosixPath(path).parts if part not in ("/", ".")]
    if ".." in parts:
        raise ValueError(f"path {path!r} climbs out of its root with '..'")
    if not parts:
        raise ValueError(f"path {path!r} names no file")
    return PurePosixPath(*parts)
