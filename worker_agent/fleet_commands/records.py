"""What the agent remembers about each fleet command, kept in ``commands.json``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from shared.states import HostRunStatus


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
