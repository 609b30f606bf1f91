"""What runs on one node besides its business components: the app instances placed there and the manual's
deployment tasks not yet ended (the node page shows them with its components)."""

from __future__ import annotations

from typing import Any

from manager_api.models import AppInstance, DeploymentTask
from manager_api.services.apps.reads import instance_json
from shared.states import TaskState

TASKS_SHOWN = 200
"""Deployment tasks of one node shown, newest first."""

ENDED = tuple(state.value for state in TaskState if state.ended)


def on_node(node_id: str) -> dict[str, list[dict[str, Any]]]:
    instances = AppInstance.select().where(AppInstance.node == node_id).order_by(AppInstance.app, AppInstance.id)
    tasks = (
        DeploymentTask.select()
        .where(DeploymentTask.node == node_id, DeploymentTask.state.not_in(ENDED))
        .order_by(DeploymentTask.updated_at.desc())
        .limit(TASKS_SHOWN)
    )
    return {
        "instances": [{"app": row.app_id, **instance_json(row, [])} for row in instances],
        "tasks": [
            {
                "id": row.id,
                "deployment_id": row.deployment_id,
                "name": row.name,
                "state": row.state,
                "pid": row.pid,
                "started_at": row.started_at,
            }
            for row in tasks
        ],
    }
