"""The public JSON of workflows: one with its steps, the list."""

from __future__ import annotations

import json
from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import Workflow
from manager_api.services.paging import Page
from manager_api.services.workflows.actions import StepView
from manager_api.services.workflows.advance import ENDED_STEPS
from shared.states import WorkflowStepStatus


def _progress(by_status: dict[str, int], total: int) -> dict[str, Any]:
    ended = sum(count for status, count in by_status.items() if WorkflowStepStatus(status) in ENDED_STEPS)
    return {
        "done": ended,
        "total": total,
        "text": f"{ended}/{total}",
        "by_status": {status.value: by_status.get(status.value, 0) for status in WorkflowStepStatus},
    }


def workflow_json(row: Workflow, by_status: dict[str, int]) -> dict[str, Any]:
    """A workflow without its steps (the list's item)."""
    return {
        "id": row.workflow_id,
        "name": row.name,
        "status": row.status,
        "progress": _progress(by_status, row.total_steps),
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "canceled_by": row.canceled_by,
        "canceled_at": iso(row.canceled_at),
    }


def step_json(view: StepView) -> dict[str, Any]:
    """A step: its status, why it did not run, and its fleet task with its host counts once started."""
    step, task = view.step, view.task
    spec = json.loads(step.spec)
    return {
        "name": step.name,
        "depends_on": json.loads(step.depends_on),
        "on_failed_dependency": step.on_failed_dependency,
        "command": spec.get("command"),
        "script": spec.get("script"),
        "targets": spec["targets"],
        "status": step.status,
        "reason": step.reason,
        "task_id": step.task_id,
        "task_url": f"/api/tasks/{step.task_id}" if step.task_id else None,
        "task_status": task.status if task is not None else None,
        "hosts": {
            "total": task.total_hosts,
            "ended": task.completed_hosts,
            "failed": task.failed_hosts,
            "succeeded": task.completed_hosts - task.failed_hosts,
        }
        if task is not None
        else None,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
    }


def detail_json(row: Workflow, steps: list[StepView]) -> dict[str, Any]:
    """A workflow with every step, in the order they were posted."""
    by_status: dict[str, int] = {}
    for view in steps:
        by_status[view.step.status] = by_status.get(view.step.status, 0) + 1
    return {**workflow_json(row, by_status), "steps": [step_json(view) for view in steps]}


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of workflows."""
    items = [workflow_json(row, page.counts.get(row.id, {})) for row in page.rows]
    return page_json("workflows", items, page.total, page_number, page_size)
