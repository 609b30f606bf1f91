"""JSON of the apps API: the services answer plain dicts already (services.apps.reads); this pages them."""

from __future__ import annotations

from typing import Any

from manager_api.api.presenters.serialize import page_json
from manager_api.services.paging import Page


def listing_json(page: Page, number: int, size: int) -> dict[str, Any]:
    """GET /api/apps: a page of apps, each with its counts and deployment progress, no instance list."""
    return page_json("apps", page.rows, page.total, number, size)


def logs_json(name: str, instance_id: str, lines: list[dict[str, str]]) -> dict[str, Any]:
    """GET /api/apps/{name}/instances/{id}/logs without follow."""
    return {"app": name, "instance_id": instance_id, "lines": lines}
