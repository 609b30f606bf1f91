"""The one engine of workflows: advance() moves a workflow as far as its steps' tasks allow, idempotently.

Called after a POST (the roots start at once), by the duties after a batch of fleet task reports ended a step's
task (the next wave starts within the same pass), after a cancel, and on every duties tick for each workflow
not ended (recovery after a restart, tasks ended by deadline or by an offline node). Two callers at once (the
API and the duties, two manager hosts) never start a step twice: a step is claimed by a conditional UPDATE
(pending -> running) that only one of them sees change a row, and committed before its task is created.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.models import FleetTask, TaskHost, Workflow, WorkflowStep, utcnow
from manager_api.services import access, secret_store
from manager_api.services.errors import Conflict, ServiceError
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.workflows import graph
from shared import keys
from shared.states import FleetTaskStatus, HostRunStatus, WorkflowStatus, WorkflowStepStatus

logger = logging.getLogger(__name__)

ENDED_STEPS = frozenset(
    {WorkflowStepStatus.SUCCEEDED, WorkflowStepStatus.FAILED, WorkflowStepStatus.SKIPPED, WorkflowStepStatus.CANCELED}
)
OPEN_WORKFLOWS = (WorkflowStatus.PENDING.value, WorkflowStatus.RUNNING.value, WorkflowStatus.CANCELED.value)
"""Statuses a workflow may have while some step has not ended (a canceled one waits for its running tasks)."""

CLAIM_GRACE = timedelta(seconds=60)
"""A step claimed this long ago whose task cannot be found (its manager died between claim and create) fails."""

STOP = "stop"
CONTINUE = "continue"


CREATED_BY_PREFIX = "workflow:"


def created_by_of(workflow_id: str, step: str) -> str:
    """The created_by of a step's fleet task: how the engine finds a task it created but did not link yet, and
    the workflow to wake when a task ends."""
    return f"{CREATED_BY_PREFIX}{workflow_id}/{step}"


SEALED_PARTS = ("secret_env", "params", "processor")
"""The parts of a step's task body kept encrypted (a secret env, script parameters some of which may be secret,
a processor's secret), in WorkflowStep.sealed: a key rotation re-encrypts them with the other secrets."""


def seal(task: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A validated fleet task body split into what ``spec`` keeps and the ``sealed`` text of its secret parts."""
    spec = {key: value for key, value in task.items() if key not in ("start", "created_by", *SEALED_PARTS)}
    parts = {key: json.dumps(task[key], ensure_ascii=False) for key in SEALED_PARTS if task.get(key)}
    return spec, secret_store.encrypt_env(parts)


def task_data(workflow_id: str, step: WorkflowStep, targets: list[str]) -> dict[str, Any]:
    """The fleet task body (POST /api/tasks') of ``step``, on ``targets``."""
    body: dict[str, Any] = json.loads(step.spec)
    # Opened here, re-encrypted into the task's own row by fleet_tasks.actions.create.
    body.update({key: json.loads(text) for key, text in secret_store.decrypt_env(step.sealed).items()})
    body["targets"] = targets
    body["created_by"] = created_by_of(workflow_id, step.name)
    body["start"] = True
    return body


def advance_open(redis: Redis, offline_after_intervals: int) -> None:
    """advance() every workflow not ended (the duties' sweep)."""
    for (pk,) in Workflow.select(Workflow.id).where(Workflow.finished_at.is_null()).tuples():
        try:
            advance(redis, pk, offline_after_intervals)
        except RedisError:
            raise  # the duties' loop waits for Redis to come back
        except Exception:
            logger.exception("workflow #%d: advance failed; retried at the next tick", pk)


def advance_for_tasks(redis: Redis, task_ids: list[str], offline_after_intervals: int) -> None:
    """advance() the workflows that created one of ``task_ids`` (tasks a report batch changed).

    Found by the tasks' created_by, not by the steps' task_id: a task may end before its step is linked to it
    (the API creating a workflow's first steps while the duties apply their reports)."""
    if not task_ids:
        return
    creators = (
        FleetTask.select(FleetTask.created_by)
        .where(FleetTask.task_id.in_(task_ids), FleetTask.created_by.startswith(CREATED_BY_PREFIX))
        .tuples()
    )
    workflow_ids = {created_by[len(CREATED_BY_PREFIX) :].split("/", 1)[0] for (created_by,) in creators}
    if not workflow_ids:
        return
    pks = Workflow.select(Workflow.id).where(
        Workflow.workflow_id.in_(sorted(workflow_ids)), Workflow.finished_at.is_null()
    )
    for (pk,) in pks.tuples():
        try:
            advance(redis, pk, offline_after_intervals)
        except Exception:
            # The reports are committed and acknowledged already: the next tick's sweep advances it again.
            logger.exception("workflow #%d: advance after a report batch failed; retried at the next tick", pk)


def advance(redis: Redis, workflow_pk: int, offline_after_intervals: int) -> None:
    """Settle the steps whose task ended, start those now ready (or skip them), end the workflow when all ended;
    then, when anything moved, tell the workflow's waiters (``?wait``, the event streams: services/changes.py)."""
    moved = _advance(redis, workflow_pk, offline_after_intervals)
    if moved:
        announce(redis, moved)


def announce(redis: Redis, workflow_id: str) -> None:
    """Wake whoever waits on ``workflow_id`` (every manager process); they read the database again."""
    try:
        redis.publish(keys.workflow_changed_channel(workflow_id), "1")
    except RedisError as exc:
        # The waiters read the database again now and then anyway: they see the change a little later.
        logger.warning("workflow %s: its waiters not woken, Redis unavailable: %s", workflow_id, exc)


def _advance(redis: Redis, workflow_pk: int, offline_after_intervals: int) -> str | None:
    """advance()'s work; the workflow_id when a step or the workflow changed, else None."""
    moved: str | None = None
    while True:
        row = Workflow.get_or_none(Workflow.id == workflow_pk)
        if row is None or row.finished_at is not None:
            return moved
        steps = {step.name: step for step in WorkflowStep.select().where(WorkflowStep.workflow == workflow_pk)}
        before = _states(steps)
        _settle_running(row, steps)
        ready = _decide_pending(row, steps)
        ended_at_once = _start(redis, row, ready, steps, offline_after_intervals) if ready else False
        if _states(steps) != before:
            moved = row.workflow_id
        if all(WorkflowStepStatus(step.status) in ENDED_STEPS for step in steps.values()):
            _finish(row)
            return row.workflow_id
        if not ended_at_once:
            return moved
        # A step ended as it started (no node to run on, its task refused): its dependents may be ready now.


def _states(steps: dict[str, WorkflowStep]) -> list[tuple[str, str | None]]:
    """What a waiter sees of the steps (the engine's copies, which each change updates)."""
    return [(step.status, step.task_id) for step in steps.values()]


def _settle_running(row: Workflow, steps: dict[str, WorkflowStep]) -> None:
    """A running step ends with its task: succeeded when it completed, canceled when canceled, else failed."""
    running = [step for step in steps.values() if step.status == WorkflowStepStatus.RUNNING.value]
    if not running:
        return
    _link_unlinked(row, [step for step in running if not step.task_id])
    ids = [step.task_id for step in running if step.task_id]
    tasks = {
        task_id: (status, finished_at)
        for task_id, status, finished_at in FleetTask.select(FleetTask.task_id, FleetTask.status, FleetTask.finished_at)
        .where(FleetTask.task_id.in_(ids))
        .tuples()
    }
    for step in running:
        if not step.task_id:
            continue
        found = tasks.get(step.task_id)
        if found is None:
            _end_step(step, WorkflowStepStatus.FAILED, "its fleet task no longer exists")
            continue
        status, finished_at = found
        if finished_at is None:
            continue
        outcome = {
            FleetTaskStatus.COMPLETED.value: WorkflowStepStatus.SUCCEEDED,
            FleetTaskStatus.CANCELED.value: WorkflowStepStatus.CANCELED,
        }.get(status, WorkflowStepStatus.FAILED)
        _end_step(step, outcome, "" if outcome == WorkflowStepStatus.SUCCEEDED else f"its fleet task {status}")


def _link_unlinked(row: Workflow, unlinked: list[WorkflowStep]) -> None:
    """Steps claimed but not linked to their task (a manager stopped between the two): the task created meanwhile
    is found by its created_by; a claim too old to still be creating one fails the step."""
    for step in unlinked:
        task_id = (
            FleetTask.select(FleetTask.task_id)
            .where(FleetTask.created_by == created_by_of(row.workflow_id, step.name))
            .scalar()
        )
        if task_id is not None:
            _set(step, task_id=task_id)
        elif step.started_at is None or utcnow() - step.started_at > CLAIM_GRACE:
            _end_step(step, WorkflowStepStatus.FAILED, "its fleet task was never created (manager stopped?)")


def _decide_pending(row: Workflow, steps: dict[str, WorkflowStep]) -> list[WorkflowStep]:
    """The pending steps to start now; skips or cancels those that will never run."""
    pending = [step for step in steps.values() if step.status == WorkflowStepStatus.PENDING.value]
    if not pending:
        return []
    if row.status == WorkflowStatus.CANCELED.value:
        for step in pending:
            _end_step(step, WorkflowStepStatus.CANCELED, "the workflow was canceled")
        return []
    stop_reason = _stop_reason(pending, steps)
    if stop_reason:
        for step in pending:
            _end_step(step, WorkflowStepStatus.SKIPPED, stop_reason)
        return []
    ready = []
    for step in pending:
        deps = [steps[name] for name in json.loads(step.depends_on)]
        if all(WorkflowStepStatus(dep.status) in ENDED_STEPS for dep in deps):
            ready.append(step)
    return ready


def _stop_reason(pending: list[WorkflowStep], steps: dict[str, WorkflowStep]) -> str:
    """Why the workflow stops starting steps ("" when it does not): a pending step whose policy is "stop" has a
    dependency that ended without succeeding. Its other dependencies need not have ended: the outcome is known."""
    for step in pending:
        if step.on_failed_dependency != STOP:
            continue
        for name in json.loads(step.depends_on):
            dep = steps[name]
            if WorkflowStepStatus(dep.status) in ENDED_STEPS and dep.status != WorkflowStepStatus.SUCCEEDED.value:
                return f"workflow stopped: step '{step.name}' depends on '{name}', which {dep.status}"
    return ""


def _start(
    redis: Redis, row: Workflow, ready: list[WorkflowStep], steps: dict[str, WorkflowStep], offline_after_intervals: int
) -> bool:
    """Claim the ``ready`` steps (pending -> running; only one caller wins each), create their fleet tasks, then
    link them: two transactions of the engine's own for a whole wave, besides each task's. Returns whether a step
    ended as it started (skipped or failed without a task)."""
    now = utcnow()
    claimed = []
    with db.write_transaction():
        for step in ready:
            if (
                WorkflowStep.update(status=WorkflowStepStatus.RUNNING.value, started_at=now)
                .where(WorkflowStep.id == step.id, WorkflowStep.status == WorkflowStepStatus.PENDING.value)
                .execute()
            ):
                claimed.append(step)
            step.status = WorkflowStepStatus.RUNNING.value  # ours, or another caller started it: not ended
    for step in claimed:
        step.started_at = now
    links = _create_tasks(redis, row, claimed, steps, offline_after_intervals)
    ended_at_once = any(WorkflowStepStatus(step.status) in ENDED_STEPS for step in claimed)
    if not links:
        return ended_at_once
    with db.write_transaction():
        for step, task_id in links:
            WorkflowStep.update(task_id=task_id).where(WorkflowStep.id == step.id).execute()
    for step, task_id in links:
        step.task_id = task_id
        logger.info("workflow %s step %s started: fleet task %s", row.workflow_id, step.name, task_id)
    if Workflow.select(Workflow.status).where(Workflow.id == row.id).scalar() == WorkflowStatus.CANCELED.value:
        # Canceled while these tasks were being created (the cancel saw no task to cancel yet): cancel them now.
        for step, task_id in links:
            try:
                fleet_tasks.cancel(redis, task_id, created_by_of(row.workflow_id, step.name))
            except Conflict:
                pass  # it ended already
    return ended_at_once


def _create_tasks(
    redis: Redis,
    row: Workflow,
    claimed: list[WorkflowStep],
    steps: dict[str, WorkflowStep],
    offline_after_intervals: int,
) -> list[tuple[WorkflowStep, str]]:
    """Create the fleet tasks of the claimed steps together (fleet_tasks.create_many: one fleet read per distinct
    targets, one transaction); each step linked to its task_id, or ended (skipped, failed) or back to pending."""
    bodies = []
    for step in claimed:
        targets = _resolved_targets(json.loads(step.spec)["targets"], steps)
        if not targets:
            names = ", ".join(graph.target_steps(json.loads(step.spec)["targets"]))
            _end_step(step, WorkflowStepStatus.SKIPPED, f"no node where {names} succeeded")
            continue
        bodies.append((step, task_data(row.workflow_id, step, targets)))
    if not bodies:
        return []
    # Every step runs under the scope of the token that posted the workflow (none for an admin's), checked now
    # against the nodes its targets reach today, as a schedule's firings are; the caller's identity comes back.
    caller = access.current()
    access.use(access.identity_of_scope(row.scope))
    try:
        results = fleet_tasks.create_many(
            redis,
            [(body, created_by_of(row.workflow_id, step.name)) for step, body in bodies],
            offline_after_intervals,
        )
    except RedisError as exc:
        # Nothing recorded: the steps go back to pending, to start at the next advance.
        logger.error("workflow %s: %d steps not started, Redis unavailable: %s", row.workflow_id, len(bodies), exc)
        for step, _ in bodies:
            _set(step, status=WorkflowStepStatus.PENDING.value, started_at=None)
        return []
    finally:
        access.use(caller)
    links = []
    for (step, _), result in zip(bodies, results, strict=True):
        if isinstance(result, ServiceError):
            _end_step(step, WorkflowStepStatus.FAILED, f"its fleet task could not be created: {result.message}")
        else:
            links.append((step, result))
    return links


def _resolved_targets(targets: list[str], steps: dict[str, WorkflowStep]) -> list[str]:
    """``targets`` with each ``succeeded_on:X`` replaced by the node ids where X's task succeeded."""
    out: list[str] = []
    for target in targets:
        if not target.startswith(graph.SUCCEEDED_ON):
            out.append(target)
            continue
        source = steps[target[len(graph.SUCCEEDED_ON) :]]
        if not source.task_id:
            continue
        nodes = (
            TaskHost.select(TaskHost.node)
            .join(FleetTask)
            .where(
                FleetTask.task_id == source.task_id,
                TaskHost.status == HostRunStatus.SUCCEEDED.value,
                TaskHost.node.is_null(False),
            )
            .order_by(TaskHost.id)
            .tuples()
        )
        out.extend(node for (node,) in nodes if node not in out)
    return out


def _set(step: WorkflowStep, **columns: Any) -> None:
    with db.write_transaction():
        WorkflowStep.update(**columns).where(WorkflowStep.id == step.id).execute()
    for name, value in columns.items():
        setattr(step, name, value)


def _end_step(step: WorkflowStep, status: WorkflowStepStatus, reason: str) -> None:
    """End a step that has not ended (a conditional UPDATE: a step ends once, whoever gets there first)."""
    now = utcnow()
    with db.write_transaction():
        (
            WorkflowStep.update(status=status.value, reason=reason, finished_at=now)
            .where(WorkflowStep.id == step.id, WorkflowStep.status.in_(_open_step_statuses()))
            .execute()
        )
    step.status, step.reason, step.finished_at = status.value, reason, now
    logger.info("workflow #%d step %s %s%s", step.workflow_id, step.name, status.value, f": {reason}" if reason else "")


def _open_step_statuses() -> list[str]:
    return [WorkflowStepStatus.PENDING.value, WorkflowStepStatus.RUNNING.value]


def _finish(row: Workflow) -> None:
    """Every step ended: the workflow ends completed when all succeeded, else failed (a canceled one stays so)."""
    # Read again: another caller may have ended a step otherwise than this one's copy says.
    statuses = [
        status for (status,) in WorkflowStep.select(WorkflowStep.status).where(WorkflowStep.workflow == row.id).tuples()
    ]
    if any(WorkflowStepStatus(status) not in ENDED_STEPS for status in statuses):
        return
    if row.status == WorkflowStatus.CANCELED.value:
        final = WorkflowStatus.CANCELED
    elif all(status == WorkflowStepStatus.SUCCEEDED.value for status in statuses):
        final = WorkflowStatus.COMPLETED
    else:
        final = WorkflowStatus.FAILED
    now = utcnow()
    with db.write_transaction():
        changed = (
            Workflow.update(status=final.value, finished_at=now, updated_at=now)
            .where(Workflow.id == row.id, Workflow.finished_at.is_null(), Workflow.status == row.status)
            .execute()
        )
    if changed:
        logger.info("workflow %s (%s) %s", row.workflow_id, row.name, final.value)
