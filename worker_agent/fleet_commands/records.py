"""What the agent remembers of each fleet command (its journal: ``commands.jsonl``), and holds of each running one."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.defaults import OUTPUT_CAP_BYTES
from shared.states import HostRunStatus

from .. import process_tree
from ..state_file import RecordJournal, RunRecord, StateFile
from .output import StreamCapture


@dataclass
class CommandRecord(RunRecord):
    """What the agent remembers about one fleet command: enough to ignore a redelivery and to settle it after
    a restart (its output lives in memory only)."""

    task_id: str
    command: str = ""
    status: str = HostRunStatus.PENDING.value  # pending until spawned, then running, then a final status
    timeout: float = 0.0
    finished_at: float | None = None
    error_message: str | None = None
    reported: bool = False  # whether the final report reached the command reports stream
    acked: bool = False  # whether the manager acknowledged the final report (shared.acks): else sent again
    schedule: dict[str, Any] | None = None  # the agent-side firing that ran it (ScheduleFiringSchema), or None

    @property
    def live(self) -> bool:
        return not HostRunStatus(self.status).ended

    def report(self, node_id: str) -> dict[str, Any]:
        """The command report of its current status (without output), as the command reports stream takes it."""
        report = {
            "task_id": self.task_id,
            "node_id": node_id,
            "status": self.status,
            "at": time.time(),
            "pid": self.pid,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error_message": self.error_message,
        }
        if self.schedule is not None:
            report["schedule"] = self.schedule  # the manager makes the firing's task from it
        return report


@dataclass(eq=False)
class RunningCommand:
    """A command this runner spawned and has not reported final yet."""

    record: CommandRecord
    popen: subprocess.Popen[bytes]
    deadline: float  # monotonic
    stdout: StreamCapture = field(default_factory=lambda: StreamCapture("stdout", OUTPUT_CAP_BYTES))
    stderr: StreamCapture = field(default_factory=lambda: StreamCapture("stderr", OUTPUT_CAP_BYTES))
    ending: HostRunStatus | None = None  # TIMED_OUT or CANCELED once the kill was decided
    stop: process_tree.GraceStop | None = None  # on the monotonic clock, once the kill was decided
    sigkilled: bool = False
    final: dict[str, Any] | None = None  # the final report, once settled


JOURNAL_FILE = "commands.jsonl"
"""The journal of the command records in the data directory (state_file.RecordJournal)."""

LEGACY_STATE_FILE = "commands.json"
"""Where agents before the journal kept them (one JSON document rewritten at each save): read once, then removed."""


def command_journal(data_dir: Path) -> RecordJournal[CommandRecord]:
    """The journal of ``data_dir``'s command records, by task id (an older agent's commands.json moved into it)."""
    legacy = StateFile(data_dir / LEGACY_STATE_FILE, CommandRecord, section="commands")
    return RecordJournal(data_dir / JOURNAL_FILE, CommandRecord, lambda rec: rec.task_id, legacy)
