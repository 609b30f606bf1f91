"""A workflow's live events (GET /api/workflows/<id>/events): SSE text, one event per change of a step."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from redis import Redis

from manager_api.models import Workflow, WorkflowStep
from manager_api.services import changes
from shared import keys

POLL_SECONDS = 1.0
"""How often the stream reads the steps again without being woken by the engine (two small indexed reads)."""
KEEPALIVE_SECONDS = 15.0
"""A comment line this often while nothing changes, so proxies keep the connection."""


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def follow(redis: Redis, workflow_id: str) -> Iterator[str]:
    """Every step as it is now, then each change as it comes, then the workflow's end (``event: end``).

    Woken by the engine's announcement of each move (advance.announce, through this process's subscriber:
    services/changes.py), reading again at least every POLL_SECONDS."""
    watcher = changes.of_process(redis)
    with watcher.watching(keys.workflow_changed_channel(workflow_id)) as changed:
        watcher.wait_subscribed(1.0)  # before the first read: no change slips by
        yield from _follow(workflow_id, changed)


def _follow(workflow_id: str, changed: threading.Event) -> Iterator[str]:
    seen: dict[str, tuple[Any, ...]] = {}
    last_status = ""
    quiet_since = time.monotonic()
    while True:
        changed.clear()  # before the reads: a change after them sets it again
        row = Workflow.get_or_none(Workflow.workflow_id == workflow_id)
        if row is None:
            yield _event("end", {"id": workflow_id, "status": "gone"})
            return
        steps = (
            WorkflowStep.select(WorkflowStep.name, WorkflowStep.status, WorkflowStep.task_id, WorkflowStep.reason)
            .where(WorkflowStep.workflow == row.id)
            .order_by(WorkflowStep.position)
        )
        for step in steps:
            state = (step.status, step.task_id, step.reason)
            if seen.get(step.name) != state:
                seen[step.name] = state
                quiet_since = time.monotonic()
                yield _event(
                    "step",
                    {"step": step.name, "status": step.status, "task_id": step.task_id, "reason": step.reason},
                )
        if row.status != last_status:
            last_status = row.status
            yield _event("workflow", {"id": workflow_id, "status": row.status})
        if row.finished_at is not None:
            yield _event("end", {"id": workflow_id, "status": row.status})
            return
        if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        changed.wait(POLL_SECONDS)
