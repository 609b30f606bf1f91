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
from shared.file_modes import make_private, make_private_dir

from .identity import NODE_ID_FILE, NODE_SECRET_FILE
from .state_file import atomic_write

LOCK_FILE = "agent.lock"
"""File in the data directory that the running agent holds an exclusive flock on, with its pid inside."""

HOSTNAME_FILE = "hostname"
"""File in the data directory naming the hostname its agent reports (rewritten at every start)."""

HOSTS_DIR = "hosts"
"""Under the default root, the directories of agents that report another hostname than the machine's."""

COMPONENTS_FILE = "components.json"
"""The business components' records (components.manager): the agent makes that manager before a first job only
when this file is there."""

APPS_FILE = "apps.json"
"""The app instances' records (app_instances.records): the agent makes that manager before a first job only when
this file is there."""

STATE_FILES = ("state.json", "commands.jsonl", COMPONENTS_FILE, APPS_FILE)
"""The records of tasks, fleet commands, business components and app instances (state_file.StateFile, and the
commands' RecordJournal)."""

LEGACY_FILES = ("commands.json",)
"""Where an older agent kept the commands' records: read once by the next agent and then removed."""

SECRET_FILES = (
    NODE_SECRET_FILE,
    *STATE_FILES,
    *LEGACY_FILES,
    *(Path(name).with_suffix(".corrupt").name for name in STATE_FILES),  # a broken one, kept aside
)
"""Files of the data directory that hold secrets: the node secret; records with commands, component and app
instance specs (their environment) and config contents. Owner only (0600)."""

SECRET_DIRS = ("tasks", "components", "command-reports", "apps", "app-runs")
"""Subdirectories holding task output, config files, held command reports (with their output), app instances'
working directories (their fetched files) and their logs and exit statuses: 0700."""

PLAIN_ENTRIES = (LOCK_FILE, HOSTNAME_FILE, NODE_ID_FILE, "images", HOSTS_DIR, "scripts")
"""What else a data directory holds, no secret (the lock, names, downloaded images, cached scripts (issue 17:
by digest, never holding a secret); in the default root, the
other hostnames' data directories, each made private by its own agent): modes left alone."""


def default_root() -> Path:
    """/var/lib/corral-agent as root, else ~/.local/share/corral-agent."""
    if os.geteuid() == 0:
        return Path("/var/lib/corral-agent")
    return Path.home() / ".local" / "share" / "corral-agent"


def default_data_dir(hostname: str, machine_hostname: str | None = None, root: Path | None = None) -> Path:
    """Where an agent reporting ``hostname`` keeps its identity when no --data-dir is given.

    ``<root>/hosts/<hostname>``, one identity per reported hostname, except that the root itself, where
    agents kept their identity before there were per-hostname directories, stays with the hostname that
    used it last (HOSTNAME_FILE), or, never claimed, goes to the agent that already has its node id there
    (an upgraded agent keeps its node) or, empty, to the machine's own hostname.
    """
    root = default_root() if root is None else root
    own = root / HOSTS_DIR / path_segment(hostname)
    if own.exists():
        return own
    claimed = reported_hostname(root)
    if claimed == hostname:
        return root
    if claimed is None:
        machine = socket.gethostname() if machine_hostname is None else machine_hostname
        if (root / NODE_ID_FILE).exists() or hostname == machine:
            return root
    return own


def reported_hostname(data_dir: Path) -> str | None:
    """The hostname the last agent on ``data_dir`` reported, if one recorded it."""
    try:
        return (data_dir / HOSTNAME_FILE).read_text().strip() or None
    except OSError:
        return None


def record_hostname(data_dir: Path, hostname: str) -> None:
    """Record which hostname this data directory's identity is reported under (atomically, when it changed)."""
    if reported_hostname(data_dir) != hostname:
        atomic_write(data_dir / HOSTNAME_FILE, (hostname + "\n").encode())


def path_segment(name: str) -> str:
    """``name`` as one safe directory name: no '/', no NUL, never '.' or '..' (percent-encoded as needed)."""
    segment = quote(name, safe="-_.@+")
    if segment in ("", ".", ".."):
        return segment.replace(".", "%2E") or "%00"
    return segment


def secure_data_dir(data_dir: Path, node_id: str) -> None:
    """Make the data directory and what holds secrets in it owner-only, logging each one fixed.

    The data directory is corral's own (never a user's working directory: tasks run in tasks/<id>/), so it
    is made 0700 whoever created it. Its secret subdirectories are made 0700 now if missing, so the drivers
    that create them later on demand find them private. Files that hold no secret (node-id, hostname,
    agent.lock) and what tasks and components write keep their modes: the 0700 directory hides them.
    """
    whose = f"node {node_id}: "
    make_private(data_dir, whose)
    for name in SECRET_DIRS:
        if not make_private_dir(data_dir / name):
            make_private(data_dir / name, whose)
    for name in SECRET_FILES:
        make_private(data_dir / name, whose)
    for held in (data_dir / "command-reports").glob("*.json"):
        make_private(held, whose)


class DataDirInUse(Exception):
    """Another live agent holds the data directory."""


class DataDirLock:
    """The running agent's hold on its data directory (shared.dir_lock), with the message an operator needs."""

    def __init__(self, data_dir: Path) -> None:
        self._lock = DirLock(Path(data_dir) / LOCK_FILE)

    def acquire(self, hostname: str = "") -> DataDirLock:
        """Take the lock or raise DataDirInUse naming the holder and what to do."""
        make_private_dir(self._lock.path.parent)  # 0700 from the start: node secret and state go in there
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
