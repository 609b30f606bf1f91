"""The public JSON of business templates (manual §5.3.2): one template as /api/task/query shows it, the list."""

from __future__ import annotations

from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import Template
from manager_api.services.deployments.templates import TemplatePage, counts, shown_groups


def template_json(template: Template) -> dict[str, Any]:
    """A template as /api/task/query answers it: commands without pin, pin in ``config.host``."""
    out_groups = []
    for group in shown_groups(template):
        tasks = []
        for name, pin, command in group:
            config: dict[str, str] = {"command": command}
            if pin:
                config["host"] = pin
            tasks.append({"name": name, "config": config})
        out_groups.append({"tasks": tasks})
    return {"name": template.name, "task_groups": out_groups}


def _summary(template: Template, deployment_count: int) -> dict[str, Any]:
    group_count, task_count = counts(template)
    return {
        "name": template.name,
        "groups": group_count,
        "tasks": task_count,
        "created_at": iso(template.created_at),
        "deployments": deployment_count,
    }


def listing_json(page: TemplatePage, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of templates, each with its group, task and deployment counts."""
    items = [_summary(t, page.deployments.get(t.id, 0)) for t in page.rows]
    return page_json("templates", items, page.total, page_number, page_size)
