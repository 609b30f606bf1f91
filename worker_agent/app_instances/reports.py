"""What an instance report (InstanceReportSchema) says of an instance: its wire state and its fields, read from
its record and the run state of its process."""

from __future__ import annotations

import time
from typing import Any

from shared.states import AppHealth, AppInstanceState

from ..deployment_tasks.restarts import RunState
from .records import InstanceRecord

WIRE_STATES = {
    RunState.STOPPED: AppInstanceState.STOPPED,
    RunState.STARTING: AppInstanceState.STARTING,
    RunState.RUNNING: AppInstanceState.RUNNING,
    RunState.BACKOFF: AppInstanceState.BACKOFF,
    RunState.STOPPING: AppInstanceState.STOPPING,
    RunState.EXITED: AppInstanceState.BACKOFF,  # never: an instance is always started again
    RunState.FATAL: AppInstanceState.BACKOFF,
}
"""The state an instance report shows for each run state of its process."""


def wire_state(rec: InstanceRecord, state: RunState) -> str:
    if rec.failed is not None:
        return AppInstanceState.FAILED
    return str(WIRE_STATES[state])


def instance_report(
    rec: InstanceRecord, state: RunState, node_id: str, restart: dict[str, Any] | None
) -> dict[str, Any]:
    """The report now, with ``restart`` (the one that just happened, if any)."""
    running = state is RunState.RUNNING
    return {
        "app": rec.spec["app"],
        "instance_id": rec.instance_id,
        "node_id": node_id,
        "version": rec.spec["version"],
        "state": wire_state(rec, state),
        "health": rec.health if running else AppHealth.UNKNOWN,
        "at": time.time(),
        "pid": rec.pid if running or state is RunState.STOPPING else None,
        "ports": list(rec.ports),
        "started_at": rec.started_at,
        "restarts": rec.restarts,
        "restart": restart,
        "next_start_at": rec.retry_at if state is RunState.BACKOFF else None,
        "exit_code": rec.exit_code,
        "signal": rec.signal,
        "reason": rec.reason,
        "last_check": rec.last_check,
        "limits": rec.limits,
    }
