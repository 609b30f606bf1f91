"""The processors' outbox: a delivery row for every ended host and for every ended task that has a processor.

Filled from the tasks' own rows, again and again, rather than at each place a host can end (a report, the
deadline, its node going offline, a cancel): a delivery cannot be missed by a new way of ending, and a crash
between a host's end and its delivery loses nothing, since the next pass makes what is missing. Rows are made
once per (task, host) and per task summary (a unique index), each with the body it is sent with at every
attempt. Only tasks still ``processor_open`` are looked at: a task leaves the outbox's view once its summary row
is made.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.api.presenters.fleet_tasks import host_json  # receivers get the very hosts[] object of the API
from manager_api.models import FleetTask, ProcessorDelivery, TaskHost, utcnow
from manager_api.services import changes
from manager_api.services.fleet_tasks.reads import WAIT_POLL_SECONDS
from manager_api.services.fleet_tasks.state import OPEN_HOST_STATUSES, is_final
from manager_api.services.processors.sealed import shown_url
from manager_api.services.serialize import iso
from shared import keys

logger = logging.getLogger(__name__)

HOST_EVENT = "task.host"
"""A node's result: the body holds the host object of GET /api/tasks/{id} (``hosts[]``)."""
SUMMARY_EVENT = "task.summary"
"""The task ended: its status and counts; sent after every host's result was sent or given up."""
SUMMARY = "summary"
"""ProcessorDelivery.about of a task's summary (a host's is "host:<row id>")."""

TASKS_PER_PASS = 50
"""Open tasks looked at per pass: a backlog is worked through a pass at a time."""


def fill() -> int:
    """Make the missing deliveries of open tasks; returns how many rows were made."""
    made = 0
    open_tasks = list(
        FleetTask.select(
            FleetTask.id,
            FleetTask.task_id,
            FleetTask.name,
            FleetTask.created_by,
            FleetTask.status,
            FleetTask.total_hosts,
            FleetTask.completed_hosts,
            FleetTask.failed_hosts,
            FleetTask.started_at,
            FleetTask.finished_at,
        )
        .where(FleetTask.processor_open == True)  # noqa: E712 - peewee's SQL comparison
        .order_by(FleetTask.id)
        .limit(TASKS_PER_PASS)
    )
    for task in open_tasks:
        made += _fill_task(task)
    return made


def _fill_task(task: FleetTask) -> int:
    final = is_final(task.status, task.finished_at)  # read before the hosts: every host had ended by then
    have = {
        about
        for (about,) in ProcessorDelivery.select(ProcessorDelivery.about)
        .where(ProcessorDelivery.task == task.id)
        .tuples()
    }
    ended = [
        pk
        for pk, status in TaskHost.select(TaskHost.id, TaskHost.status).where(TaskHost.task == task.id).tuples()
        if status not in OPEN_HOST_STATUSES and f"host:{pk}" not in have
    ]
    rows: list[dict[str, Any]] = []
    now = utcnow()
    if ended:
        for host in TaskHost.select().where(TaskHost.id.in_(ended)).order_by(TaskHost.id):
            body = {"task_id": task.task_id, "name": task.name, "created_by": task.created_by, "host": host_json(host)}
            rows.append(_row(task.id, f"host:{host.id}", HOST_EVENT, body, now))
    closing = final and SUMMARY not in have
    if closing:
        body = {
            "task_id": task.task_id,
            "name": task.name,
            "created_by": task.created_by,  # schedule:<name>, workflow:<id>/<step>, or who posted it
            "status": task.status,
            "total_hosts": task.total_hosts,
            "succeeded_hosts": task.completed_hosts - task.failed_hosts,
            "failed_hosts": task.failed_hosts,
            "started_at": iso(task.started_at),
            "finished_at": iso(task.finished_at),
        }
        rows.append(_row(task.id, SUMMARY, SUMMARY_EVENT, body, now))
    if not rows and not final:
        return 0
    with db.write_transaction():
        if rows:
            # Another manager host's pass may have made some already: those are skipped, not doubled.
            ProcessorDelivery.insert_many(rows).on_conflict_ignore().execute()
        if final:
            FleetTask.update(processor_open=False).where(FleetTask.id == task.id).execute()
    if closing:
        logger.info(
            "fleet task %s: processor summary queued (%d host results in all)", task.task_id, len(have) + len(rows) - 1
        )
    return len(rows)


def _row(task_pk: int, about: str, event: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
    delivery_id = uuid.uuid4().hex
    full = {"event": event, "id": delivery_id, "at": iso(now), **body}
    return {
        "task": task_pk,
        "about": about,
        "delivery_id": delivery_id,
        "event": event,
        "body": json.dumps(full, ensure_ascii=False, separators=(",", ":")),
        "state": "pending",
        "next_at": now,
        "created_at": now,
    }


def wait_summary(redis: Redis, task: FleetTask, seconds: float) -> None:
    """Return once the summary of ``task`` (ended, with a processor) was sent or given up, or after ``seconds``.

    Woken by the sender's publication on the task's channel as it settles a summary (changes.py), and reading
    again every WAIT_POLL_SECONDS anyway."""

    def settled() -> bool | None:
        state = (
            ProcessorDelivery.select(ProcessorDelivery.state)
            .where(ProcessorDelivery.task == task.id, ProcessorDelivery.about == SUMMARY)
            .scalar()
        )
        return True if state in ("sent", "given_up") else None

    changes.wait_until(redis, keys.task_changed_channel(task.task_id), seconds, WAIT_POLL_SECONDS, settled)


def status(task: FleetTask) -> dict[str, Any] | None:
    """What a task's answer shows of its processor: where (scheme, host, port), and its deliveries by state."""
    url = shown_url(task.processor)
    if url is None:
        return None
    counts = {"pending": 0, "sent": 0, "given_up": 0}
    summary: str | None = None
    last_error = ""
    for about, state, error in (
        ProcessorDelivery.select(ProcessorDelivery.about, ProcessorDelivery.state, ProcessorDelivery.last_error)
        .where(ProcessorDelivery.task == task.id)
        .tuples()
    ):
        counts[state] = counts.get(state, 0) + 1
        if about == SUMMARY:
            summary = state
        if error:
            last_error = error
    return {
        "url": url,
        "deliveries": counts,
        # None until the task ends and its summary is queued; then pending, sent or given_up.
        "summary": summary,
        "last_error": last_error,
    }
