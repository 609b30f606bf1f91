"""Writing the manager's secret files (join token, Redis password and config)."""

from __future__ import annotations

import os
from pathlib import Path

from shared.file_modes import PRIVATE_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600 from the first byte).

    Through a temp file renamed over ``path``: the text lands in a new file, so whoever opened the old one
    while an older version left it 0644 does not read the new text through that descriptor.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w") as f:
            # Before the first byte: a temp file a crashed manager of this pid left keeps its old mode.
            os.fchmod(f.fileno(), PRIVATE_FILE)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
