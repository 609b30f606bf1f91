"""The agent's persistent record of its tasks: one JSON file, rewritten atomically on every change."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from shared.states import TaskState

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

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class StateFile:
    """Loads and atomically saves the task records of one data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, TaskRecord]:
        """All records by task id; an unreadable file is kept aside and an empty state returned."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            return {tid: TaskRecord.from_dict(rec) for tid, rec in data.get("tasks", {}).items()}
        except (ValueError, TypeError, AttributeError):
            # Keep the broken file for inspection rather than crash the agent on every start.
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            logger.error("state file %s is unreadable; moved to %s and starting empty", self.path, aside)
            return {}

    def save(self, records: dict[str, TaskRecord]) -> None:
        """Write every record: tmp file, fsync, rename, fsync of the directory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": STATE_FILE_VERSION, "tasks": {tid: asdict(rec) for tid, rec in records.items()}},
            indent=1,
            sort_keys=True,
        )
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
