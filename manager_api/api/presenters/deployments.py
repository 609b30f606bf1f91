"""The public JSON of deployments: the manual's status answer (§5.3.3), one deployment (§5.6), the list."""

from __future__ import annotations

from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import Deployment, DeploymentTask
from manager_api.services.deployments.actions import DeploymentDetail
from manager_api.services.deployments.state import instance_status
from manager_api.services.paging import Page


def status_json(deployment: Deployment) -> dict[str, Any]:
    """``{"id", "status", "state"}`` of POST /api/task/task_group/query."""
    return {"id": deployment.id, "status": int(instance_status(deployment.state)), "state": deployment.state}


def _head(deployment: Deployment) -> dict[str, Any]:
    """What the detail and the list show of a deployment itself."""
    return {
        "id": deployment.id,
        "name": deployment.template_name,
        "state": deployment.state,
        "status": int(instance_status(deployment.state)),
        "created_at": iso(deployment.created_at),
        "stopped_at": iso(deployment.stopped_at),
    }


def task_json(task: DeploymentTask) -> dict[str, Any]:
    """One deployment task with its node and outcome."""
    return {
        "id": task.id,
        "name": task.name,
        "group": task.group_index,
        "command": task.command,
        "host": task.pin,
        "node": {"id": task.node.id, "hostname": task.node.hostname, "ip": task.node.ip},
        "pid": task.pid,
        "state": task.state,
        "exit_code": task.exit_code,
        "error": task.error,
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
    }


def detail_json(detail: DeploymentDetail) -> dict[str, Any]:
    """A deployment with every task (GET /deployments/{id})."""
    return {**_head(detail.deployment), "tasks": [task_json(t) for t in detail.tasks]}


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of deployments, each with its tasks counted by state."""
    items = [
        {**_head(d), "task_count": sum(page.counts[d.id].values()), "task_states": page.counts[d.id]} for d in page.rows
    ]
    return page_json("deployments", items, page.total, page_number, page_size)
