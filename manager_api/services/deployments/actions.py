"""Deployments: deploy a template, read its status, stop it (manual §5.3.3, §5.6), list and delete them."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.models import Deployment, DeploymentTask, Node, utcnow
from manager_api.services import access, audit, dispatch
from manager_api.services.deployments import templates
from manager_api.services.deployments.host_pins import task_pin
from manager_api.services.deployments.state import LIVE_STATES, deployment_state
from manager_api.services.errors import Conflict, NotFound, Unavailable
from manager_api.services.paging import Page, page_of, status_counts
from manager_api.services.placement import candidates
from manager_api.services.placement.task_groups import GroupRequest, PlacementError, TaskRequest, place
from shared import defaults
from shared.states import ENDED_TASK_STATES, DeploymentState, TaskState

logger = logging.getLogger(__name__)

NOT_FOUND = "Deployment not found"
ENDED_STATES = frozenset({DeploymentState.COMPLETED.value, DeploymentState.FAILED.value, DeploymentState.STOPPED.value})
STOP_PATH = "POST /api/task/task_group/stop"


def get(deployment_id: str) -> Deployment:
    """The deployment ``deployment_id``, or a 404."""
    deployment = Deployment.get_or_none(Deployment.id == deployment_id)
    if deployment is None:
        raise NotFound(NOT_FOUND)
    return deployment


def deploy(redis: Redis, name: str, actor: str, offline_after_intervals: int) -> str:
    """Place, record and send a new instance of template ``name``; returns its id."""
    template = templates.get(name)
    spec = templates.groups(template)
    requests = [
        GroupRequest(
            index=gi,
            tasks=tuple(TaskRequest(name=t["name"], pin=task_pin(t["config"])[0]) for t in group["tasks"]),
        )
        for gi, group in enumerate(spec)
    ]
    for group in spec:
        for task in group["tasks"]:
            access.check_command(task_pin(task["config"])[1])
    deployment_id = str(uuid.uuid4())
    with db.write_transaction():
        # Inside the write lock, so two concurrent deploys see each other's tasks in the load.
        try:
            placement = place(requests, candidates.node_loads(redis, offline_after_intervals))
        except PlacementError as exc:
            logger.warning("deploy of template %s refused: %s", name, exc)
            raise Conflict(f"Cannot deploy '{name}': {exc}") from exc
        # node_loads left out the nodes beyond an operator's query; checked again here, where it matters.
        access.check_nodes(redis, offline_after_intervals, placement.values(), f"template {name}")
        now = utcnow()
        Deployment.create(
            id=deployment_id,
            template=template,
            template_name=name,
            state=DeploymentState.PENDING.value,
            created_at=now,
            created_by=actor,
        )
        rows = []
        for gi, group in enumerate(spec):
            for ti, task in enumerate(group["tasks"]):
                pin, command = task_pin(task["config"])
                rows.append(
                    {
                        "id": str(uuid.uuid4()),
                        "deployment": deployment_id,
                        "group_index": gi,
                        "task_index": ti,
                        "name": task["name"],
                        "command": command,
                        "pin": pin,
                        "node": placement[gi],
                        "state": TaskState.PENDING.value,
                        "updated_at": now,
                    }
                )
        DeploymentTask.insert_many(rows).execute()
        audit.record(actor, "deployment.create", deployment_id, {"template": name, "placement": placement})
    logger.info("deployment %s of template %s created by %s: %d tasks", deployment_id, name, actor, len(rows))
    _send_starts(redis, deployment_id, rows)
    return deployment_id


def _send_starts(redis: Redis, deployment_id: str, rows: list[dict[str, Any]]) -> None:
    failed: list[str] = []
    error = ""
    for row in rows:
        if error:
            failed.append(row["id"])
            continue
        payload = {
            "task_id": row["id"],
            "deployment_id": deployment_id,
            "name": row["name"],
            "command": row["command"],
            "env": {},
        }
        try:
            dispatch.start_task(redis, row["node"], payload)
        except RedisError as exc:
            error = f"could not enqueue the task: {exc}"
            logger.error("deployment %s: task %s not sent to node %s: %s", deployment_id, row["id"], row["node"], exc)
            failed.append(row["id"])
    if not failed:
        return
    with db.write_transaction():
        now = utcnow()
        DeploymentTask.update(state=TaskState.FAILED.value, error=error, ended_at=now, updated_at=now).where(
            DeploymentTask.id.in_(failed)
        ).execute()
        recompute(deployment_id)
    raise Unavailable("Task queue unavailable: the deployment could not be sent to its nodes", {"id": deployment_id})


def recompute(deployment_id: str) -> DeploymentState:
    """Derive and store the deployment's state from its tasks (call inside a write transaction)."""
    deployment = Deployment.get_by_id(deployment_id)
    states = [
        s
        for (s,) in DeploymentTask.select(DeploymentTask.state)
        .where(DeploymentTask.deployment == deployment_id)
        .tuples()
    ]
    current = DeploymentState(deployment.state)
    new = deployment_state(current, states)
    if new != current:
        changes: dict[Any, Any] = {Deployment.state: new.value}
        if new == DeploymentState.STOPPED:
            changes[Deployment.stopped_at] = utcnow()
        Deployment.update(changes).where(Deployment.id == deployment_id).execute()
        logger.info("deployment %s %s -> %s", deployment_id, current.value, new.value)
    return new


def stop(
    redis: Redis,
    deployment_id: str,
    actor: str,
    grace_seconds: float,
    offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS,
) -> None:
    """Mark the deployment and its live tasks STOPPING and send one STOP_TASKS per node."""
    with db.write_transaction():
        deployment = get(deployment_id)
        if deployment.state == DeploymentState.STOPPED.value:
            return
        live = list(
            DeploymentTask.select(DeploymentTask.id, DeploymentTask.node, DeploymentTask.state)
            .where(DeploymentTask.deployment == deployment_id)
            .where(DeploymentTask.state.not_in([s.value for s in ENDED_TASK_STATES]))
        )
        access.check_nodes(redis, offline_after_intervals, [t.node_id for t in live], f"deployment {deployment_id}")
        if not live:
            # Everything has ended by itself (COMPLETED/FAILED): nothing to stop, keep what it reads.
            return
        now = utcnow()
        DeploymentTask.update(state=TaskState.STOPPING.value, updated_at=now).where(
            DeploymentTask.id.in_([t.id for t in live])
        ).execute()
        if deployment.state != DeploymentState.STOPPING.value:
            Deployment.update(state=DeploymentState.STOPPING.value).where(Deployment.id == deployment_id).execute()
            logger.info("deployment %s %s -> STOPPING (by %s)", deployment_id, deployment.state, actor)
        audit.record(actor, "deployment.stop", deployment_id, {"tasks": len(live)})
    by_node: dict[str, list[str]] = defaultdict(list)
    for task in live:
        by_node[task.node_id].append(task.id)
    try:
        for node_id, task_ids in by_node.items():
            dispatch.stop_tasks(redis, node_id, deployment_id, task_ids, grace_seconds)
    except RedisError as exc:
        logger.error("deployment %s: stop not sent: %s", deployment_id, exc)
        raise Unavailable(
            "Task queue unavailable: the stop could not be sent; try again", {"id": deployment_id}
        ) from exc


@dataclass(frozen=True)
class DeploymentDetail:
    """A deployment with its tasks in group and task order, each with its node joined."""

    deployment: Deployment
    tasks: list[DeploymentTask]


def detail(deployment_id: str) -> DeploymentDetail:
    """A deployment with every task, its node and outcome (manual §5.6)."""
    deployment = get(deployment_id)
    query = (
        DeploymentTask.select(DeploymentTask, Node.id, Node.hostname, Node.ip)
        .join(Node)
        .where(DeploymentTask.deployment == deployment_id)
        .order_by(DeploymentTask.group_index, DeploymentTask.task_index)
    )
    return DeploymentDetail(deployment, list(query))


def listing(page: int, page_size: int, state: str | None, name: str | None) -> Page:
    """A page of deployments, newest first, with their tasks counted by state."""
    query = Deployment.select()
    if state:
        query = query.where(Deployment.state == state)
    if name:
        query = query.where(Deployment.template_name.contains(name))
    total, rows = page_of(query, page, page_size, Deployment.created_at.desc(), Deployment.id.desc())
    counts = status_counts(DeploymentTask.deployment, DeploymentTask.state, [d.id for d in rows])
    return Page(total, rows, counts)


def still_running(deployment_ids: list[str]) -> set[str]:
    """Those of ``deployment_ids`` that may still run something: not ended, or a task not ended yet.

    A FAILED deployment can still have tasks running (one task failing fails it): its records are what
    a stop needs, so it must be stopped before it can go.
    """
    if not deployment_ids:
        return set()
    live_states = [s.value for s in LIVE_STATES]
    unended = Deployment.select(Deployment.id).where(
        Deployment.id.in_(deployment_ids), Deployment.state.not_in(list(ENDED_STATES))
    )
    with_live_tasks = (
        DeploymentTask.select(DeploymentTask.deployment)
        .where(DeploymentTask.deployment.in_(deployment_ids), DeploymentTask.state.in_(live_states))
        .distinct()
    )
    return {d for (d,) in unended.tuples()} | {d for (d,) in with_live_tasks.tuples()}


def _not_ended(deployment: Deployment) -> Conflict:
    if deployment.state == DeploymentState.STOPPING.value:
        # The stop was asked already; its tasks end when their nodes answer (or are forgotten).
        message = (
            f"Deployment {deployment.id} is STOPPING: delete it once it is STOPPED (a task on a node that "
            "will not come back ends when that node is forgotten: DELETE /api/nodes/{id})"
        )
    elif deployment.state in ENDED_STATES:
        message = f"Deployment {deployment.id} is {deployment.state} but tasks of it run: stop it first: {STOP_PATH}"
    else:
        message = f"Deployment {deployment.id} is {deployment.state}: stop it first: {STOP_PATH}"
    return Conflict(message, {"id": deployment.id, "state": deployment.state})


def delete(deployment_id: str, actor: str) -> None:
    """Delete an ended deployment with its tasks (404 unknown, 409 while something of it may still run)."""
    with db.write_transaction():
        deployment = get(deployment_id)
        if still_running([deployment_id]):
            raise _not_ended(deployment)
        # Tasks first: the database would cascade, but not one made without foreign keys enforced.
        tasks = DeploymentTask.delete().where(DeploymentTask.deployment == deployment_id).execute()
        deployment.delete_instance()
        audit.record(
            actor,
            "deployment.deleted",
            deployment_id,
            {"template": deployment.template_name, "state": deployment.state, "tasks": tasks},
        )
    logger.info("deployment %s (%s) deleted by %s", deployment_id, deployment.template_name, actor)
