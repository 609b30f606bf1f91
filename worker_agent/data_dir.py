"""The agent's data directory: where it is by default, and the lock that keeps it to one agent.

The data directory holds the node's identity (node id and secret), so two agents sharing one would be one
node whose hostname flips. By default each reported hostname gets a directory of its own, and a lock on
the directory (as Nomad and Consul hold one on theirs) makes a second agent on it exit at once.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import quote

from shared.dir_lock import DirectoryInUse, DirLock

LOCK_FILE = "agent.lock"
"""File in the data directory that the running agent holds an exclusive flock on, with its pid inside."""

HOSTS_DIR = "hosts"
"""Under the default root, the directories of agents that report another hostname than the machine's."""


def default_root() -> Path:
    """/var/lib/corral-agent as root, else ~/.local/share/corral-agent."""
    if os.geteuid() == 0:
        return Path("/var/lib/corral-agent")
    return Path.home() / ".local" / "share" / "corral-agent"


def default_data_dir(hostname: str, machine_hostname: str | None = None) -> Path:
    """The root itself for the machine's own hostname (where agents have always kept their identity, so an
    upgrade keeps the node), else ``<root>/hosts/<hostname>``: one identity per reported hostname."""
    machine = socket.gethostname() if machine_hostname is None else machine_hostname
    if hostname == machine:
        return default_root()
    return default_root() / HOSTS_DIR / path_segment(hostname)


def path_segment(name: str) -> str:
    """``name`` as one safe directory name: no '/', no NUL, never '.' or '..' (percent-encoded as needed)."""
    segment = quote(name, safe="-_.@+")
    if segment in ("", ".", ".."):
        return segment.replace(".", "%2E") or "%00"
    return segment


class DataDirInUse(Exception):
    """Another live agent holds the data directory."""


class DataDirLock:
    """The running agent's hold on its data directory (shared.dir_lock), with the message an operator needs."""

    def __init__(self, data_dir: Path) -> None:
        self._lock = DirLock(Path(data_dir) / LOCK_FILE)

    def acquire(self, hostname: str = "") -> DataDirLock:
        """Take the lock or raise DataDirInUse naming the holder and what to do."""
        try:
            self._lock.acquire(f"agent of hostname {hostname}" if hostname else "agent")
        except DirectoryInUse as exc:
            raise DataDirInUse(
                f"data directory {exc.directory} is in use by another agent ({exc.holder}); give each agent on "
                "this host its own --data-dir (agents with different --hostname values get their own directory "
                "by default)"
            ) from None
        return self

    def release(self) -> None:
        """Give the directory up."""
        self._lock.release()
