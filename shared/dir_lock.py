"""An exclusive lock on a directory, held by a running process, as Nomad and Consul hold one on their data dirs."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class DirectoryInUse(Exception):
    """Another live process holds the lock; ``holder`` is what it wrote about itself (pid, role)."""

    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(f"{directory} is in use by {holder}")
        self.directory = directory
        self.holder = holder


class DirLock:
    """An exclusive, non-blocking flock on one file of a directory, held until release() or process exit.

    flock belongs to the open file, which Python opens close-on-exec: the processes a holder starts never
    inherit it, so the directory of a killed holder is free again at once, even while its children run on.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def acquire(self, about: str) -> DirLock:
        """Take the lock and write ``pid <pid>, <about>`` into it, or raise DirectoryInUse."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the holder
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise DirectoryInUse(self.path.parent, holder) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}" + (f", {about}" if about else "") + "\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        """Give the directory up (closing the file drops the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None
