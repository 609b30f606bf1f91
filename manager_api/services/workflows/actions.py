"""Workflows: record one (after graph.check), cancel one, read them; advance.py runs their steps."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.models import FleetTask, Workflow, WorkflowStep, utcnow
from manager_api.services import access, audit, changes
from manager_api.services.errors import Conflict, Invalid, NotFound
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import targets as fleet_targets
from manager_api.services.paging import Page, matching, page_of, status_counts
from manager_api.services.scripts import running as script_runs
from manager_api.services.workflows import advance, graph
from shared import keys
from shared.states import WorkflowStatus, WorkflowStepStatus

logger = logging.getLogger(__name__)

NOT_FOUND = "Workflow not found"
WAIT_POLL_SECONDS = 1.0
"""How often ``?wait`` looks at the workflow again without being woken (see wait)."""
PRUNE_CHUNK = 500
"""Workflows deleted per transaction by prune (other writers wait for each)."""


@dataclass(frozen=True)
class StepView:
    """A step with what its fleet task says of its hosts (None before it started)."""

    step: WorkflowStep
    task: FleetTask | None


def get(workflow_id: str) -> Workflow:
    """The workflow ``workflow_id``, or a 404."""
    row = Workflow.get_or_none(Workflow.workflow_id == workflow_id) if len(workflow_id) <= 64 else None
    if row is None:
        raise NotFound(NOT_FOUND)
    return row


def create(redis: Redis, data: dict[str, Any], actor: str, offline_after_intervals: int) -> str:
    """Check the steps (graph.check, the token's commands and node scope), record the workflow and its steps in
    one transaction, then start the steps that depend on nothing; returns its workflow_id."""
    steps: list[dict[str, Any]] = data["steps"]
    graph.check(steps)
    for i, step in enumerate(steps):
        task = step["task"]
        command, env = task.get("command"), {**(task.get("env") or {}), **(task.get("secret_env") or {})}
        if task.get("script"):
            try:  # the script and its parameters, checked now as POST /api/tasks checks them
                script_run = script_runs.prepare(task)
            except Invalid as exc:
                raise Invalid(f"Invalid request format: steps[{i}].task.{exc.message}") from exc
            command, env = script_run.command, {**env, **script_run.env, **script_run.secret_env}
        fleet_targets.queries(_plain_targets(task["targets"]))
        access.check_command(str(command), env)
        if plain := _plain_targets(task["targets"]):
            fleet_tasks.check_scope(redis, offline_after_intervals, plain)
    sealed_steps = [advance.seal(step["task"]) for step in steps]
    workflow_id = str(uuid.uuid4())
    now = utcnow()
    with db.write_transaction():
        pk = db.insert_row(
            Workflow,
            {
                "workflow_id": workflow_id,
                "name": data["name"],
                "status": WorkflowStatus.RUNNING.value,
                "total_steps": len(steps),
                "scope": access.scope_of_current(),
                "created_by": actor,
                "created_at": now,
                "updated_at": now,
                "started_at": now,
            },
        )
        db.insert_rows(
            WorkflowStep,
            [
                {
                    "workflow": pk,
                    "position": i,
                    "name": step["name"],
                    "spec": json.dumps(sealed_steps[i][0], ensure_ascii=False),
                    "sealed": sealed_steps[i][1],
                    "depends_on": json.dumps(step["depends_on"]),
                    "on_failed_dependency": step["on_failed_dependency"],
                    "status": WorkflowStepStatus.PENDING.value,
                }
                for i, step in enumerate(steps)
            ],
        )
        audit.record(actor, "workflow.create", workflow_id, {"name": data["name"], "steps": len(steps)})
    logger.info("workflow %s (%s) created by %s: %d steps", workflow_id, data["name"], actor, len(steps))
    advance.advance(redis, pk, offline_after_intervals)
    return workflow_id


def _plain_targets(targets: list[str]) -> list[str]:
    return [target for target in targets if not target.startswith(graph.SUCCEEDED_ON)]


def cancel(redis: Redis, workflow_id: str, actor: str, offline_after_intervals: int) -> None:
    """Cancel a workflow: pending steps are canceled, running steps' tasks canceled (409 once it has ended)."""
    now = utcnow()
    with db.write_transaction():
        row = get(workflow_id)
        if row.status not in (WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value):
            raise Conflict(f"Workflow {workflow_id} is already {row.status}")
        Workflow.update(status=WorkflowStatus.CANCELED.value, canceled_by=actor, canceled_at=now, updated_at=now).where(
            Workflow.id == row.id
        ).execute()
        pending = (
            WorkflowStep.update(
                status=WorkflowStepStatus.CANCELED.value, reason="the workflow was canceled", finished_at=now
            )
            .where(WorkflowStep.workflow == row.id, WorkflowStep.status == WorkflowStepStatus.PENDING.value)
            .execute()
        )
        running = [
            task_id
            for (task_id,) in WorkflowStep.select(WorkflowStep.task_id)
            .where(WorkflowStep.workflow == row.id, WorkflowStep.status == WorkflowStepStatus.RUNNING.value)
            .tuples()
            if task_id
        ]
        audit.record(actor, "workflow.cancel", workflow_id, {"pending": pending, "running": len(running)})
    logger.info("workflow %s canceled by %s: %d pending steps, %d running", workflow_id, actor, pending, len(running))
    advance.announce(redis, workflow_id)  # its status and pending steps changed here, not in advance
    for task_id in running:
        try:
            fleet_tasks.cancel(redis, task_id, actor, offline_after_intervals)
        except Conflict:
            pass  # it ended meanwhile: advance settles the step from its outcome
    advance.advance(redis, row.id, offline_after_intervals)


def detail(workflow_id: str) -> tuple[Workflow, list[StepView]]:
    """The workflow and its steps in their posted order, each with its fleet task when it has one."""
    row = get(workflow_id)
    steps = list(WorkflowStep.select().where(WorkflowStep.workflow == row.id).order_by(WorkflowStep.position))
    ids = [step.task_id for step in steps if step.task_id]
    tasks = {task.task_id: task for task in FleetTask.select().where(FleetTask.task_id.in_(ids))} if ids else {}
    return row, [StepView(step, tasks.get(step.task_id or "")) for step in steps]


def listing(page: int, page_size: int, status: str | None, name: str | None) -> Page:
    """A page of workflows, newest first, with their steps counted by status."""
    query = matching(Workflow.select(), Workflow.status, status, Workflow.name, name)
    total, rows = page_of(query, page, page_size, Workflow.created_at.desc(), Workflow.id.desc())
    counts = status_counts(WorkflowStep.workflow, WorkflowStep.status, [row.id for row in rows])
    return Page(total, rows, counts)


def wait(redis: Redis, workflow_id: str, seconds: float) -> None:
    """Return once the workflow has ended (every step too), or after ``seconds``.

    Woken by the engine's announcement (advance.announce, through this process's subscriber: services/changes.py)
    and reading the database again at least every WAIT_POLL_SECONDS (a lost subscription, another manager host
    whose announcement was missed)."""

    def ended() -> bool | None:
        finished = Workflow.select(Workflow.finished_at).where(Workflow.workflow_id == workflow_id).scalar()
        return True if finished is not None else None

    changes.wait_until(redis, keys.workflow_changed_channel(workflow_id), seconds, WAIT_POLL_SECONDS, ended)


def prune(retention_days: int) -> int:
    """Delete workflows that ended more than ``retention_days`` ago, with their steps (the fleet tasks' own
    retention, the same days, deletes their tasks); returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    old = [pk for (pk,) in Workflow.select(Workflow.id).where(Workflow.finished_at < cutoff).tuples()]
    for i in range(0, len(old), PRUNE_CHUNK):
        chunk = old[i : i + PRUNE_CHUNK]
        with db.write_transaction():
            WorkflowStep.delete().where(WorkflowStep.workflow.in_(chunk)).execute()
            Workflow.delete().where(Workflow.id.in_(chunk)).execute()
    if old:
        logger.info("workflows pruned: %d ended before %s", len(old), cutoff.isoformat())
    return len(old)
