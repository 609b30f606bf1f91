"""What the agent keeps of each app instance it holds (apps.json in its data dir), so a restarted agent adopts
the same process (pid and start time) with its ports, restart count and health."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.states import AppHealth

from ..data_dir import APPS_FILE
from ..state_file import RunRecord, StateFile

STATE_FILE = APPS_FILE
"""The instances' state file in the agent's data dir."""

SECTION = "instances"

RESTARTS_KEPT = 20
"""Most recent restarts (time and reason) kept in a record."""


@dataclass(kw_only=True)
class InstanceRecord(RunRecord):
    """One instance: its spec, the run state of its process (deployment_tasks.restarts.RunState) and what its
    reports say."""

    spec: dict[str, Any]
    run_state: str = "STOPPED"
    failed: str | None = None  # why the spec cannot run at all (ends the instance)
    ports: list[int] = field(default_factory=list)
    restarts: int = 0  # automatic restarts so far
    backoff_restarts: int = 0  # restarts since the last stable run: how long the next backoff is
    retry_at: float | None = None  # BACKOFF: wall time of the next start
    running_since: float | None = None  # wall time
    health: str = AppHealth.UNKNOWN
    healthy_since: float | None = None  # wall time its checks last turned healthy (its start, without checks)
    last_check: dict[str, Any] | None = None
    check_failures: list[int] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # InstanceRestartSchema, newest last
    signal: int | None = None
    reason: str | None = None
    limits: str | None = None
    oom_base: int = 0  # the memory group's OOM kill count when the process started
    log_offsets: dict[str, int] = field(default_factory=dict)
    stop: dict[str, Any] | None = None  # StopInstanceSchema, once asked
    kill_at: float | None = None  # wall time the SIGKILL of a stop or of a failed check is due
    killing: str | None = None  # why the agent is killing the process to restart it (failed check)

    @property
    def instance_id(self) -> str:
        return str(self.spec["instance_id"])

    def describe(self) -> str:
        return f"app {self.spec['app']} instance {self.instance_id}"

    def add_restart(self, restart: dict[str, Any]) -> None:
        self.restarts += 1
        self.history.append(restart)
        del self.history[:-RESTARTS_KEPT]


def state_file(data_dir: Path) -> StateFile[InstanceRecord]:
    return StateFile(data_dir / STATE_FILE, InstanceRecord, section=SECTION)


def run_dir(data_dir: Path, instance_id: str) -> Path:
    """The agent's own directory of an instance: its log files and the exit status its launch script leaves."""
    return data_dir / "app-runs" / instance_id


def default_working_dir(data_dir: Path, instance_id: str) -> Path:
    """An instance's working directory when its spec names none."""
    return data_dir / "apps" / instance_id
