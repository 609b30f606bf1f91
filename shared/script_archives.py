"""What the manager (at registration) and the agent (before extracting) both check in a script's zip archive."""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterable
from pathlib import PurePosixPath


def safe_member(name: str) -> bool:
    """Whether a member name stays inside the directory it is extracted into (no absolute path, no ..)."""
    path = PurePosixPath(name)
    return bool(name) and "\\" not in name and "\x00" not in name and not path.is_absolute() and ".." not in path.parts


def is_symlink(member: zipfile.ZipInfo) -> bool:
    """Whether a member is a symlink (its Unix mode, in the high bits of external_attr)."""
    return stat.S_ISLNK(member.external_attr >> 16)


def extracted_size(members: Iterable[zipfile.ZipInfo]) -> int:
    """Bytes the members' files take once extracted (as their headers say: reading one stops at its size)."""
    return sum(member.file_size for member in members if not member.is_dir())
