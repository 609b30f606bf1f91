"""The duties' side of fleet tasks: hosts past their deadline or on a node gone offline end; old tasks go."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.models import FleetTask, Node, TaskHost, utcnow
from manager_api.services import dispatch
from manager_api.services.fleet_tasks.actions import run_payload
from manager_api.services.fleet_tasks.state import FINAL_STATUSES, OPEN_HOST_STATUSES, recompute
from manager_api.services.scripts import running
from shared import keys
from shared.defaults import DEADLINE_SLACK_SECONDS
from shared.states import FleetTaskStatus, HostRunStatus, NodeStatus

logger = logging.getLogger(__name__)

PRUNE_CHUNK = 500
"""Tasks pruned per round of statements, their ids well under SQLite's bound-variable limit."""

NODE_WENT_OFFLINE = "node went offline"
NO_ANSWER = "no answer from node"
NO_CANCEL_ANSWER = "no answer to the cancel from node"


def _end_hosts(task: FleetTask, status: HostRunStatus, reason: str, where: Any) -> int:
    """End the open hosts of ``task`` selected by ``where`` with ``status`` and ``reason``; returns how many."""
    now = utcnow()
    with db.write_transaction():
        ended = (
            TaskHost.update(status=status.value, error_message=reason, finished_at=now, updated_at=now)
            .where(TaskHost.task == task.id, where)
            .execute()
        )
        if ended:
            recompute(task.id)
    if ended:
        logger.warning("fleet task %s: %d hosts ended %s: %s", task.task_id, ended, status.value, reason)
    return int(ended)


def enforce_deadlines(slack_seconds: float = DEADLINE_SLACK_SECONDS) -> int:
    """End hosts that outlived their task's timeout + slack (or a cancel + slack); returns how many ended.

    Measured on the manager's clock from the task's start, so an agent's clock never matters.
    """
    now = utcnow()
    slack = timedelta(seconds=slack_seconds)
    active = FleetTask.select(
        FleetTask.id,
        FleetTask.task_id,
        FleetTask.status,
        FleetTask.timeout,
        FleetTask.started_at,
        FleetTask.canceled_at,
    ).where(
        FleetTask.status.in_([FleetTaskStatus.RUNNING.value, FleetTaskStatus.CANCELED.value]),
        FleetTask.finished_at.is_null(),
        FleetTask.started_at.is_null(False),
    )
    ended = 0
    for task in list(active):
        if task.status == FleetTaskStatus.CANCELED.value and task.canceled_at and now > task.canceled_at + slack:
            ended += _end_hosts(task, HostRunStatus.CANCELED, NO_CANCEL_ANSWER, TaskHost.status.in_(OPEN_HOST_STATUSES))
            continue
        if now <= task.started_at + timedelta(seconds=task.timeout) + slack:
            continue
        ended += _end_hosts(
            task,
            HostRunStatus.TIMED_OUT,
            f"timed out after {task.timeout} s (no result from the node)",
            TaskHost.status == HostRunStatus.RUNNING.value,
        )
        ended += _end_hosts(task, HostRunStatus.FAILED, NO_ANSWER, TaskHost.status == HostRunStatus.PENDING.value)
    return ended


def send_pending_again(redis: Redis, slack_seconds: float = DEADLINE_SLACK_SECONDS) -> int:
    """Send RUN_COMMAND again to every host still pending (Redis restarted: the jobs may be lost with it);
    returns how many. Its deadline stays the task's own; an agent that has the first job already runs it
    once (it keeps every task id it saw), so a job sent twice costs one no-op."""
    now = utcnow()
    active = FleetTask.select().where(
        FleetTask.status == FleetTaskStatus.RUNNING.value,
        FleetTask.finished_at.is_null(),
        FleetTask.started_at.is_null(False),
    )
    sent = 0
    for task in list(active):
        left = (task.started_at + timedelta(seconds=task.timeout) - now).total_seconds()
        if left <= slack_seconds:
            continue  # about to be given up on: a late run would only be refused as expired
        node_ids = [
            node_id
            for (node_id,) in TaskHost.select(TaskHost.node)
            .where(TaskHost.task == task.id, TaskHost.status == HostRunStatus.PENDING.value)
            .tuples()
        ]
        if node_ids:
            running.ship(redis, task.script)  # Redis restarted: the script's content may be gone with it
            dispatch.run_command(redis, node_ids, run_payload(task), seconds_left=left)
            sent += len(node_ids)
    if sent:
        logger.warning("Redis restarted: RUN_COMMAND sent again to %d hosts still pending", sent)
    return sent


def fail_hosts_on_offline_nodes() -> int:
    """End as failed "node went offline" every running host whose node the duties last saw offline."""
    rows = list(
        TaskHost.select(TaskHost.task, TaskHost.id)
        .join(Node)
        .where(TaskHost.status == HostRunStatus.RUNNING.value, Node.status == int(NodeStatus.OFFLINE))
        .tuples()
    )
    by_task: dict[int, list[int]] = {}
    for task_pk, host_pk in rows:
        by_task.setdefault(task_pk, []).append(host_pk)
    ended = 0
    for task_pk, host_pks in by_task.items():
        task = FleetTask.get_by_id(task_pk)
        ended += _end_hosts(
            task,
            HostRunStatus.FAILED,
            NODE_WENT_OFFLINE,
            TaskHost.id.in_(host_pks) & (TaskHost.status == HostRunStatus.RUNNING.value),
        )
    return ended


def prune(redis: Redis, retention_days: int) -> int:
    """Delete tasks that ended more than ``retention_days`` ago, with their hosts and output; returns how many."""
    cutoff = utcnow() - timedelta(days=retention_days)
    old = list(
        FleetTask.select(FleetTask.id, FleetTask.task_id)
        .where(FleetTask.finished_at < cutoff, FleetTask.status.in_([s.value for s in FINAL_STATUSES]))
        .tuples()
    )
    for i in range(0, len(old), PRUNE_CHUNK):
        chunk = old[i : i + PRUNE_CHUNK]
        pks = [pk for pk, _ in chunk]
        task_ids = dict(chunk)
        # Each host wrote its own output stream: read who, before the hosts go.
        hosts = TaskHost.select(TaskHost.task, TaskHost.node).where(
            TaskHost.task.in_(pks), TaskHost.node.is_null(False)
        )
        outputs = [keys.task_output(task_ids[task_pk], node_id) for task_pk, node_id in hosts.tuples()]
        with db.write_transaction():
            TaskHost.delete().where(TaskHost.task.in_(pks)).execute()
            FleetTask.delete().where(FleetTask.id.in_(pks)).execute()
        if outputs:
            redis.delete(*outputs)
    if old:
        logger.info("fleet tasks pruned: %d ended before %s", len(old), cutoff.isoformat())
    return len(old)
