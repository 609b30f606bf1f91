"""What the agent remembers about each deployment task, kept in ``state.json``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.states import TaskState

from ..state_file import RunRecord

STARTING = "STARTING"
"""Internal state between recording a task and spawning it; never published (not an agent-reported state)."""

LIVE_STATES = frozenset({STARTING, TaskState.RUNNING.value, TaskState.STOPPING.value})
"""States of a record whose process may still be alive."""


_SAFE_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_safe_task_id(task_id: str) -> bool:
    """Whether ``task_id`` can name a directory under tasks/ (no separators, no dot-dot)."""
    return bool(_SAFE_TASK_ID.match(task_id)) and ".." not in task_id


@dataclass
class TaskRecord(RunRecord):
    """What the agent remembers about one task, enough to adopt or settle it after a restart."""

    task_id: str
    deployment_id: str
    name: str = ""
    command: str = ""
    state: str = STARTING
    ended_at: float | None = None
    error: str | None = None
    stop_requested_at: float | None = None
    kill_at: float | None = None  # wall time after which whatever is left gets SIGKILL
    reported: bool = False  # whether the current state reached the events stream
    acked: bool = False  # whether the manager acknowledged the current state's event (shared.acks)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES
