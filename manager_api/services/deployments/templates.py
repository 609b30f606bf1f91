"""Business templates: create, show, list and delete them (manual §5.3.2)."""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

from peewee import IntegrityError, fn

from manager_api import db
from manager_api.models import Deployment, Template
from manager_api.services import audit
from manager_api.services.deployments import (
    actions as deployments,  # deployments imports this module too: only used at call time
)
from manager_api.services.deployments.host_pins import task_pin
from manager_api.services.errors import Conflict, NotFound
from manager_api.services.paging import page_of

logger = logging.getLogger(__name__)

NOT_FOUND = "Business template not found"
IDS_SHOWN = 20
"""Deployment ids named in a refused delete."""


def _exists_message(name: str) -> str:
    return f"Business template '{name}' already exists"


def create(name: str, task_groups: list[dict[str, Any]], actor: str) -> Template:
    """Store a new template; a taken name is a 409."""
    try:
        with db.write_transaction():
            if Template.select().where(Template.name == name).exists():
                raise Conflict(_exists_message(name))
            template = Template.create(name=name, spec=json.dumps(task_groups, ensure_ascii=False))
            audit.record(actor, "template.create", name, {"groups": len(task_groups)})
    except IntegrityError as exc:
        # Another request won the race between our check and insert.
        raise Conflict(_exists_message(name)) from exc
    logger.info("template %s created by %s (%d groups)", name, actor, len(task_groups))
    return template


def get(name: str) -> Template:
    """The template called ``name``, or a 404."""
    template = Template.get_or_none(Template.name == name)
    if template is None:
        raise NotFound(NOT_FOUND)
    return template


def groups(template: Template) -> list[dict[str, Any]]:
    """The stored task groups, as posted."""
    result: list[dict[str, Any]] = json.loads(template.spec)
    return result


def shown_groups(template: Template) -> list[list[tuple[str, str | None, str]]]:
    """Each group's tasks as (name, pin, command without the pin): what /api/task/query shows."""
    return [[(task["name"], *task_pin(task["config"])) for task in group["tasks"]] for group in groups(template)]


def counts(template: Template) -> tuple[int, int]:
    """How many groups and tasks the template holds."""
    spec = groups(template)
    return len(spec), sum(len(group["tasks"]) for group in spec)


class TemplatePage(NamedTuple):
    """One page of templates, how many the filter matches in all, and how many deployments each has."""

    total: int
    rows: list[Template]
    deployments: dict[int, int]


def listing(page: int, page_size: int, name: str | None) -> TemplatePage:
    """A page of templates by name, with how many deployments each has."""
    query = Template.select()
    if name:
        query = query.where(Template.name.contains(name))
    total, rows = page_of(query, page, page_size, Template.name)
    deployment_counts: dict[int, int] = {}
    if rows:
        deployment_counts = dict(
            Deployment.select(Deployment.template, fn.COUNT(Deployment.id))
            .where(Deployment.template.in_([t.id for t in rows]))
            .group_by(Deployment.template)
            .tuples()
        )
    return TemplatePage(total, rows, deployment_counts)


def _in_use(name: str, live: list[str], ended: list[str]) -> Conflict:
    """409 naming the deployments that keep a template, and what to do about them."""
    if live:
        message = (
            f"Business template '{name}' has {len(live)} live deployment(s): stop them "
            "(POST /api/task/task_group/stop) and delete them (DELETE /api/deployments/{id}) first"
        )
    else:
        # Their records name the template and are history: never dropped behind the user's back.
        message = (
            f"Business template '{name}' is used by {len(ended)} ended deployment(s) kept as history: "
            "delete them first (DELETE /api/deployments/{id})"
        )
    return Conflict(message, {"live": len(live), "ended": len(ended), "deployments": (live + ended)[:IDS_SHOWN]})


def delete(name: str, actor: str) -> None:
    """Delete a template no deployment uses (404 unknown, 409 while deployments of it remain)."""
    with db.write_transaction():
        template = get(name)
        used_by = [
            deployment_id
            for (deployment_id,) in Deployment.select(Deployment.id)
            .where(Deployment.template == template.id)
            .order_by(Deployment.created_at.desc())
            .tuples()
        ]
        if used_by:
            running = deployments.still_running(used_by)
            live = [d for d in used_by if d in running]
            raise _in_use(name, live, [d for d in used_by if d not in running])
        group_count, task_count = counts(template)
        template.delete_instance()
        audit.record(actor, "template.deleted", name, {"groups": group_count, "tasks": task_count})
    logger.info("template %s deleted by %s", name, actor)
