"""Reading fleet tasks: one, a page of them, their status, and waiting for one to be over."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from manager_api import prepared
from manager_api.models import FleetTask, TaskHost
from manager_api.services import changes, secret_store
from manager_api.services.errors import NotFound
from manager_api.services.fleet_tasks.state import is_final
from manager_api.services.paging import Page, matching, page_of, status_counts
from manager_api.services.processors.sealed import posted
from shared import keys

NOT_FOUND = "Task not found"
WAIT_POLL_SECONDS = 0.25
"""How often a waiting request looks at the task again."""


def get(task_id: str) -> FleetTask:
    """The task ``task_id``, or a 404."""
    found = _find(task_id)
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


def _find(task_id: str) -> FleetTask | None:
    found = prepared.models(
        FleetTask, "fleet task", [task_id], lambda: FleetTask.select().where(FleetTask.task_id == task_id)
    )
    return found[0] if found else None


def detail(task_id: str) -> tuple[FleetTask, list[TaskHost]]:
    """The task and every host of it, in the order they were recorded."""
    task = get(task_id)
    return task, hosts_of(task.id)


def hosts_of(task_pk: int) -> list[TaskHost]:
    """Every host of the task whose row id is ``task_pk``, in the order they were recorded."""
    return prepared.models(
        TaskHost,
        "fleet task hosts",
        [task_pk],
        lambda: TaskHost.select().where(TaskHost.task == task_pk).order_by(TaskHost.id),
    )


def _status(task_id: str) -> tuple[str, Any] | None:
    """(status, finished_at or None) of a task, or None when it does not exist."""
    found = prepared.rows(
        "fleet task status",
        [task_id],
        lambda: FleetTask.select(FleetTask.status, FleetTask.finished_at).where(FleetTask.task_id == task_id),
    )
    return (found[0][0], found[0][1]) if found else None


def listing(page: int, page_size: int, status: str | None, name: str | None) -> Page:
    """A page of tasks, newest first, each with its hosts counted by status."""
    query = matching(FleetTask.select(), FleetTask.status, status, FleetTask.name, name)
    total, tasks = page_of(query, page, page_size, FleetTask.created_at.desc(), FleetTask.id.desc())
    return Page(total, tasks, status_counts(TaskHost.task, TaskHost.status, [t.id for t in tasks]))


def wait(redis: Redis, task_id: str, seconds: float) -> FleetTask | None:
    """Return once the task is over, with its row as read then, or after ``seconds`` with None (None too when
    it does not exist): the caller of an ended task reads only its hosts afterwards, one query fewer on the
    path of a real-time call's answer.

    Woken by this process's subscriber to the tasks' changes (changes.py) when the duties apply a report; the
    database is read again at least every WAIT_POLL_SECONDS too, for changes that come from elsewhere (deadlines,
    cancel) or that a lost subscription missed.
    """

    def over() -> FleetTask | bool | None:
        found = _find(task_id)
        if found is None:
            return False  # gone: nothing to wait for
        return found if is_final(found.status, found.finished_at) else None

    ended = changes.wait_until(redis, keys.task_changed_channel(task_id), seconds, WAIT_POLL_SECONDS, over)
    return ended if isinstance(ended, FleetTask) else None


def status_of(task_id: str) -> tuple[str, bool] | None:
    """(status, over) of a task, or None when it does not exist."""
    found = _status(task_id)
    if found is None:
        return None
    return found[0], is_final(*found)


def rerun_body(task_id: str) -> dict[str, Any]:
    """What POST /api/tasks would take to run ``task_id`` again: its name, description, command, parameters,
    targets, timeout and env (the targets resolved anew when it starts)."""
    task = get(task_id)
    return {
        "name": task.name,
        "description": task.description,
        "command": task.command,
        "parameters": task.parameters,
        "targets": json.loads(task.targets),
        "timeout": task.timeout,
        "env": json.loads(task.env),
        # Internal only (the console's rerun loads it back through FleetTaskSchema): never an API answer.
        "secretEnv": secret_store.decrypt_env(task.secret_env),
        "processor": posted(task.processor),
    }
