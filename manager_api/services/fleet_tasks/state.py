"""A fleet task's derived state: its counters and status, from its hosts' statuses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from peewee import fn

from manager_api import db, prepared
from manager_api.models import FleetTask, TaskHost, utcnow
from manager_api.observability.instruments import fleet_task_duration
from manager_api.services.alerts import events as alerts
from shared.states import FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({FleetTaskStatus.COMPLETED, FleetTaskStatus.FAILED, FleetTaskStatus.CANCELED})
"""A task in one of these never changes status again."""
OPEN_HOST_STATUSES = (HostRunStatus.PENDING.value, HostRunStatus.RUNNING.value)
"""Statuses of a host that has not ended."""


def counts_of(by_status: Mapping[str, int]) -> dict[str, int]:
    """Host counts (total, ended, succeeded, failed, running, pending) from a count per host status."""
    total = sum(by_status.values())
    pending = by_status.get(HostRunStatus.PENDING.value, 0)
    running = by_status.get(HostRunStatus.RUNNING.value, 0)
    succeeded = by_status.get(HostRunStatus.SUCCEEDED.value, 0)
    ended = total - pending - running
    return {
        "total": total,
        "ended": ended,
        "succeeded": succeeded,
        "failed": ended - succeeded,
        "running": running,
        "pending": pending,
    }


def is_final(status: str, finished_at: Any) -> bool:
    """A task is over when its status is final and every host has ended (finished_at is then set)."""
    return status in FINAL_STATUSES and finished_at is not None


def recompute(task_pk: int) -> FleetTaskStatus:
    """Store a task's counters and status derived from its hosts (call inside a write transaction).

    The duties run this for every task a batch of reports changed, on the path of a real-time call's answer:
    its two reads run from SQL text built once per process (manager_api.prepared), which the ORM spent most of
    the time of the apply building again."""
    found = prepared.rows(
        "fleet task derived state",
        [task_pk],
        lambda: FleetTask.select(
            FleetTask.task_id, FleetTask.status, FleetTask.finished_at, FleetTask.started_at
        ).where(FleetTask.id == task_pk),
    )
    if not found:
        raise FleetTask.DoesNotExist(f"fleet task #{task_pk}")
    task_id, status, finished_at, started_at = found[0]
    by_status = prepared.rows(
        "fleet task host counts",
        [task_pk],
        lambda: (
            TaskHost.select(TaskHost.status, fn.COUNT(TaskHost.id))
            .where(TaskHost.task == task_pk)
            .group_by(TaskHost.status)
        ),
    )
    return store_derived(
        task_pk,
        task_id,
        FleetTaskStatus(status),
        FleetTask.finished_at.python_value(finished_at),
        counts_of(dict(by_status)),
        started=FleetTask.started_at.python_value(started_at),
    )


def store_derived(
    task_pk: int,
    task_id: str,
    current: FleetTaskStatus,
    finished_at: Any,
    counts: dict[str, int],
    started: Any = None,
    **changes: Any,
) -> FleetTaskStatus:
    """Store the counters, and the status and finished_at they imply, with ``changes``; returns the status.
    ``started``: the task's started_at when the caller read it (else it is read if the task ends now)."""
    new = current
    all_ended = counts["ended"] == counts["total"]
    if current == FleetTaskStatus.RUNNING and all_ended:
        new = FleetTaskStatus.COMPLETED if counts["succeeded"] == counts["total"] else FleetTaskStatus.FAILED
    ended_now = new in FINAL_STATUSES and all_ended and finished_at is None
    if ended_now:
        finished_at = utcnow()
    # One UPDATE from plain SQL text (db.update_rows): the ORM's building of it cost more than running it.
    columns = {
        FleetTask.status: new.value,
        FleetTask.total_hosts: counts["total"],
        FleetTask.completed_hosts: counts["ended"],
        FleetTask.failed_hosts: counts["failed"],
        FleetTask.finished_at: finished_at,
        FleetTask.updated_at: utcnow(),
    }
    columns.update({FleetTask._meta.fields[name]: value for name, value in changes.items()})  # type: ignore[attr-defined]
    db.update_rows(FleetTask, [(task_pk, columns)])
    if new != current:
        logger.info("fleet task %s %s -> %s", task_id, current.value, new.value)
    if ended_now:
        _observe_duration(task_pk, new, finished_at, changes.get("started_at") or started)
        if new == FleetTaskStatus.FAILED:  # once: a task ends once (finished_at was None until now)
            name = FleetTask.select(FleetTask.name).where(FleetTask.id == task_pk).scalar()
            alerts.raise_alert(
                alerts.TASK_FAILED,
                task_id=task_id,
                name=name,
                hosts=counts["total"],
                failed_hosts=counts["failed"],
                succeeded_hosts=counts["succeeded"],
            )
    return new


def _observe_duration(task_pk: int, status: FleetTaskStatus, finished_at: Any, started_at: Any) -> None:
    """The task's run time into its histogram, once, as it ends (a task canceled before its start has none).

    Observed inside the caller's transaction: one that rolls back afterwards counts a task that will end again,
    a rare double count a histogram of durations can bear."""
    if started_at is None:
        started_at = FleetTask.select(FleetTask.started_at).where(FleetTask.id == task_pk).scalar()
    if started_at is not None:
        fleet_task_duration.labels(status.value).observe(max(0.0, (finished_at - started_at).total_seconds()))
