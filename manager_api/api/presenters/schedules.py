"""The public JSON of schedules: one schedule, its detail with the fleet tasks it fired last, the list."""

from __future__ import annotations

import json
from typing import Any

from manager_api.api.presenters.fleet_tasks import processor_of
from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import Schedule
from manager_api.services import secret_store
from manager_api.services.paging import Page
from manager_api.services.schedules.actions import ScheduleDetail
from manager_api.services.schedules.agent_sets import HeldVersion


def schedule_json(row: Schedule, recent_task_ids: list[str] | None = None) -> dict[str, Any]:
    """The public JSON of a schedule; with ``recent_task_ids`` for the detail view."""
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "command": row.command,
        "script": row.script or None,
        # Secret ones by name only, as secretEnv: never a value.
        "params": {**json.loads(row.params), **secret_store.names_of(row.secret_params)},
        "targets": json.loads(row.targets),
        "timeout": row.timeout,
        "env_keys": sorted(json.loads(row.env)),  # values may be secrets: never echoed, as for tasks
        "secretEnv": secret_store.names_of(row.secret_env),  # names only, never a value
        "processor": processor_of(row.processor),
        "cron": row.cron,
        "interval": row.interval,
        "paused": row.paused,
        "on_agent": row.on_agent,
        "next_run_at": iso(row.next_run_at),
        "last_run_at": iso(row.last_run_at),
        "last_task_id": row.last_task_id,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }
    if recent_task_ids is not None:
        out["recent_task_ids"] = recent_task_ids
    return out


def detail_json(detail: ScheduleDetail, agents: tuple[int, list[HeldVersion]] | None = None) -> dict[str, Any]:
    """A schedule with the ids of its most recent tasks, newest first; an on_agent one with ``agents``: the
    version of the agents' sets and what each of its nodes holds."""
    out = schedule_json(detail.schedule, detail.recent_task_ids)
    version, held = agents if agents is not None else (None, [])
    out["agent_set_version"] = version
    out["agents"] = [
        {"node_id": h.node_id, "hostname": h.hostname, "version": h.version, "current": h.version == version}
        for h in held
    ]
    return out


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of schedules."""
    return page_json("schedules", [schedule_json(row) for row in page.rows], page.total, page_number, page_size)
