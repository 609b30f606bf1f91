"""The public JSON of fleet tasks and their hosts (json tags of document 004's models)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import FleetTask, TaskHost
from manager_api.services import secret_store
from manager_api.services.fleet_tasks.state import counts_of
from manager_api.services.paging import Page
from manager_api.services.processors.sealed import shown_url


def progress(counts: Mapping[str, int]) -> dict[str, Any]:
    """The ``progress`` object: counts and the percentage of hosts that ended."""
    total = counts["total"]
    percent = round(100 * counts["ended"] / total) if total else 0
    return {**counts, "percent": percent}


def execution_ms(host: TaskHost) -> int | None:
    """Milliseconds from start to finish on the node (both stamped by its agent), or None."""
    if host.started_at is None or host.finished_at is None:
        return None
    return max(0, round((host.finished_at - host.started_at).total_seconds() * 1000))


def host_json(host: TaskHost) -> dict[str, Any]:
    """One host's part of a task."""
    return {
        "host_id": host.node_id,
        "hostname": host.hostname,
        "ip": host.ip,
        "target": host.target,
        "status": host.status,
        "stdout": host.stdout,
        "stderr": host.stderr,
        "stdout_truncated": host.stdout_truncated,
        "stderr_truncated": host.stderr_truncated,
        "exit_code": host.exit_code,
        "started_at": iso(host.started_at),
        "finished_at": iso(host.finished_at),
        "execution_time": execution_ms(host),
        "error_message": host.error_message,
    }


def processor_of(stored: str) -> dict[str, Any] | None:
    """A processor as a list shows it: where its results go (scheme, host, port; never the path or secret)."""
    url = shown_url(stored)
    return {"url": url} if url is not None else None


def task_json(
    task: FleetTask,
    hosts: Sequence[TaskHost] | None,
    by_status: Mapping[str, int] | None = None,
    processor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A task; with ``hosts`` (detail) its counts come from them, else from ``by_status`` (list). ``processor``:
    its processor's delivery status (processors.outbox.status), else what a list shows of it."""
    if hosts is not None:
        by_status = {}
        for host in hosts:
            by_status[host.status] = by_status.get(host.status, 0) + 1
    counts = counts_of(by_status or {})
    out: dict[str, Any] = {
        "task_id": task.task_id,
        "name": task.name,
        "description": task.description,
        "command": task.command,
        "parameters": task.parameters,
        "timeout": task.timeout,
        "targets": json.loads(task.targets),
        "secretEnv": secret_store.names_of(task.secret_env),  # names only, never a value
        "processor": processor if processor is not None else processor_of(task.processor),
        "script": json.loads(task.script) if task.script else None,  # secret params by name only
        "status": task.status,
        "total_hosts": task.total_hosts,
        "completed_hosts": task.completed_hosts,
        "failed_hosts": task.failed_hosts,
        "progress": progress(counts),
        "created_by": task.created_by,
        "started_by": task.started_by,
        "canceled_by": task.canceled_by,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "canceled_at": iso(task.canceled_at),
    }
    if hosts is not None:
        out["hosts"] = [host_json(h) for h in hosts]
    return out


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of tasks without their hosts (``size`` repeats ``page_size``: its older name)."""
    items = [task_json(t, None, page.counts[t.id]) for t in page.rows]
    return {**page_json("tasks", items, page.total, page_number, page_size), "size": page_size}
