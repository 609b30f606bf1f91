"""The words and small pieces every apps module shares: desired states, the jobs to send, the audit actions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from manager_api.services import dispatch
from shared.states import AppInstanceState

logger = logging.getLogger(__name__)

RUN = "run"
"""AppInstance.desired: the manager wants it running."""
STOP = "stop"
"""AppInstance.desired: STOP_INSTANCE sent; the row goes once its node reports it stopped."""

RUNNING = "running"
STOPPED = "stopped"
"""App.desired values."""

DUTIES = "duties"
"""The actor of what the duties do on their own."""

ENDED = frozenset({AppInstanceState.STOPPED.value, AppInstanceState.FAILED.value})
LOST = AppInstanceState.LOST.value
PENDING = AppInstanceState.PENDING.value

NOT_FOUND = "App {name} not found"


@dataclass
class Jobs:
    """RUN_INSTANCE and STOP_INSTANCE jobs to send once their transaction committed: (node id, payload)."""

    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def extend(self, other: Jobs) -> None:
        self.runs.extend(other.runs)
        self.stops.extend(other.stops)

    def __bool__(self) -> bool:
        return bool(self.runs or self.stops)


def send(redis: Redis, jobs: Jobs) -> int:
    """Enqueue the stops then the runs on their nodes' queues in one pipeline; returns how many."""
    return dispatch.instance_jobs(redis, jobs.runs, jobs.stops)


def stop_payload(app: str, instance_id: str, spec: dict[str, Any] | None, reason: str) -> dict[str, Any]:
    """STOP_INSTANCE of one instance, with its app's killSignal when the app is known."""
    payload: dict[str, Any] = {"app": app, "instance_id": instance_id, "reason": reason}
    if spec is not None:
        payload["kill_signal"] = spec["killSignal"]
    return payload
