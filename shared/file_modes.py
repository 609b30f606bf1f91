"""Keeping corral's secret files to their owner: the modes they are made with, and the fix for older ones.

Both sides keep secrets on disk (the manager its database and join token, the agent its node secret and
state files) and both fix, at every start, what an older version or a careless copy left open to others.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_FILE = 0o600
"""Mode of a file that holds a secret (a key, a secret, tasks' environment, config contents): owner only."""

PRIVATE_DIR = 0o700
"""Mode of a directory of corral's own that holds such files."""

OPEN_BITS = 0o077
"""The group and other bits: none of them may stay on a private file or directory."""


def mode_text(mode: int) -> str:
    """``mode``'s permission bits as a log shows them: 0644."""
    return f"{stat.S_IMODE(mode):04o}"


def is_open(mode: int) -> bool:
    """Whether a file or directory of ``mode`` lets its group or other users in."""
    return bool(mode & OPEN_BITS)


def make_private(path: Path, whose: str = "") -> bool:
    """Take the group and other bits off ``path`` if it has any, with one log line; whether it changed.

    Only bits are taken away, so a file its owner made read-only stays so; a missing path is no error; a
    symlink is left alone (chmod would follow it out of the directory, to a file that is not ours to fix).
    ``whose`` starts the log line (``node <id>: ``).
    """
    try:
        old = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(old) or not is_open(old):
        return False
    new = stat.S_IMODE(old) & ~OPEN_BITS
    os.chmod(path, new)
    # A warning: until now any local user could read what it holds, which an operator may want to rotate.
    logger.warning(
        "%s%s %s was mode %s, open to other users: now %s",
        whose,
        "directory" if stat.S_ISDIR(old) else "file",
        path,
        mode_text(old),
        mode_text(new),
    )
    return True


def make_private_dir(path: Path) -> bool:
    """Create ``path`` (and any missing parent, with the usual mode) as a 0700 directory; whether this made it.

    An existing directory is left as it is: the caller decides whether it is corral's own to fix.
    """
    if path.is_dir():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        return False  # made meanwhile by another process, whose mode it keeps
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode went through the umask, which could take the owner's bits too
    return True
