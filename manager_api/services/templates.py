"""Business templates: create and show them (manual §5.3.2)."""

from __future__ import annotations

import json
import logging
from typing import Any

from peewee import IntegrityError

from .. import db
from ..errors import ApiError
from ..models import Template
from . import audit
from .commands import task_pin

logger = logging.getLogger(__name__)

NOT_FOUND = "Business template not found"


def _exists_message(name: str) -> str:
    return f"Business template '{name}' already exists"


def create(name: str, task_groups: list[dict[str, Any]], actor: str) -> Template:
    """Store a new template; a taken name is a 409."""
    try:
        with db.write_transaction():
            if Template.select().where(Template.name == name).exists():
                raise ApiError(409, _exists_message(name))
            template = Template.create(name=name, spec=json.dumps(task_groups, ensure_ascii=False))
            audit.record(actor, "template.create", name, {"groups": len(task_groups)})
    except IntegrityError as exc:
        # Another request won the race between our check and insert.
        raise ApiError(409, _exists_message(name)) from exc
    logger.info("template %s created by %s (%d groups)", name, actor, len(task_groups))
    return template


def get(name: str) -> Template:
    """The template called ``name``, or a 404."""
    template = Template.get_or_none(Template.name == name)
    if template is None:
        raise ApiError(404, NOT_FOUND)
    return template


def groups(template: Template) -> list[dict[str, Any]]:
    """The stored task groups, as posted."""
    result: list[dict[str, Any]] = json.loads(template.spec)
    return result


def show(template: Template) -> dict[str, Any]:
    """A template as /api/task/query answers it: commands without pin, pin in ``config.host``."""
    out_groups = []
    for group in groups(template):
        tasks = []
        for task in group["tasks"]:
            pin, command = task_pin(task["config"])
            config: dict[str, str] = {"command": command}
            if pin:
                config["host"] = pin
            tasks.append({"name": task["name"], "config": config})
        out_groups.append({"tasks": tasks})
    return {"name": template.name, "task_groups": out_groups}
