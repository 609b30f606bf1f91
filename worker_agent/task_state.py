"""The agent's persistent record of its tasks and fleet commands (and the state file business components use too):
JSON files, rewritten atomically on every change."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from shared.file_modes import PRIVATE_FILE
from shared.states import HostRunStatus, TaskState

logger = logging.getLogger(__name__)

STARTING = "STARTING"
"""Internal state between recording a task and spawning it; never published (not an agent-reported state)."""

LIVE_STATES = frozenset({STARTING, TaskState.RUNNING.value, TaskState.STOPPING.value})
"""States of a record whose process may still be alive."""

STATE_FILE_VERSION = 1
"""Layout version of state.json."""

_SAFE_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_safe_task_id(task_id: str) -> bool:
    """Whether ``task_id`` can name a directory under tasks/ (no separators, no dot-dot)."""
    return bool(_SAFE_TASK_ID.match(task_id)) and ".." not in task_id


@dataclass
class TaskRecord:
    """What the agent remembers about one task, enough to adopt or settle it after a restart."""

    task_id: str
    deployment_id: str
    name: str = ""
    command: str = ""
    state: str = STARTING
    pid: int | None = None
    create_time: float | None = None  # psutil's, to tell our process from a recycled pid
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    stop_requested_at: float | None = None
    kill_at: float | None = None  # wall time after which whatever is left gets SIGKILL
    reported: bool = False  # whether the current state reached the events stream
    acked: bool = False  # whether the manager acknowledged the current state's event (shared.acks)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CommandRecord:
    """What the agent remembers about one fleet command: enough to ignore a redelivery and to settle it after
    a restart (its output lives in memory only)."""

    task_id: str
    command: str = ""
    status: str = HostRunStatus.PENDING.value  # pending until spawned, then running, then a final status
    timeout: float = 0.0
    pid: int | None = None
    create_time: float | None = None  # psutil's, to tell our process from a recycled pid
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    error_message: str | None = None
    reported: bool = False  # whether the final report reached the command reports stream
    acked: bool = False  # whether the manager acknowledged the final report (shared.acks): else sent again

    @property
    def live(self) -> bool:
        return not HostRunStatus(self.status).ended

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass, so asdict() takes it

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=_Record)


class StateFile(Generic[R]):
    """Loads and atomically saves the records (of one ``record_type``) of one data directory."""

    def __init__(self, path: Path, record_type: type[R], section: str = "tasks", mode: int = PRIVATE_FILE) -> None:
        self.path = path
        self.record_type = record_type
        self.section = section
        # Owner only: records carry commands, component specs with their environment and config contents.
        self.mode = mode

    def load(self) -> dict[str, R]:
        """All records by key; an unreadable file is kept aside and an empty state returned."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            return {key: self.record_type.from_dict(rec) for key, rec in data.get(self.section, {}).items()}
        except (ValueError, TypeError, AttributeError):
            # Keep the broken file for inspection rather than crash the agent on every start.
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            logger.error("state file %s is unreadable; moved to %s and starting empty", self.path, aside)
            return {}

    def save(self, records: dict[str, R]) -> None:
        """Write every record at once (atomic_write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": STATE_FILE_VERSION, self.section: {key: asdict(rec) for key, rec in records.items()}},
            indent=1,
            sort_keys=True,
        )
        atomic_write(self.path, body.encode(), self.mode)


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Write ``path`` whole or not at all: temp file in the same dir, fsync, rename, fsync of the dir.

    The new file has ``mode`` (less the umask) from its first byte, whatever the one it replaces had.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            # A temp file a crashed agent of the same pid left behind keeps its own mode through O_CREAT.
            os.fchmod(f.fileno(), stat.S_IMODE(os.fstat(f.fileno()).st_mode) & mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
