"""A workflow's live events (GET /api/workflows/<id>/events): SSE text, one event per change of a step."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from manager_api.models import Workflow, WorkflowStep

POLL_SECONDS = 0.1
"""How often the stream reads the steps again (two small indexed reads)."""
KEEPALIVE_SECONDS = 15.0
"""A comment line this often while nothing changes, so proxies keep the connection."""


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def follow(workflow_id: str) -> Iterator[str]:
    """Every step as it is now, then each change as it comes, then the workflow's end (``event: end``)."""
    seen: dict[str, tuple[Any, ...]] = {}
    last_status = ""
    quiet_since = time.monotonic()
    while True:
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
        time.sleep(POLL_SECONDS)
