"""What the businesses API answers: the list, one business (document 001 §3.2) with its history, its components.

Environment variable values and config file contents are never echoed (they often hold secrets): only
their names and paths.
"""

from __future__ import annotations

import json
from typing import Any

from peewee import JOIN

from manager_api.models import Business, BusinessComponent, BusinessEvent, Node
from manager_api.services.businesses.actions import get
from manager_api.services.paging import page_of, status_counts
from manager_api.services.serialize import iso

HISTORY_LIMIT = 100
"""Transitions shown in a business's history, newest first."""


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def component_json(row: BusinessComponent, hostname: str | None) -> dict[str, Any]:
    """One component as GET /api/businesses/{id} shows it."""
    usage = None
    if row.usage_at is not None:
        usage = {"cpu_percent": row.cpu_percent, "memory_mb": row.memory_used_mb, "gpu_percent": row.gpu_percent}
    return {
        "component_id": row.component_id,
        "component_name": row.component_name,
        "type": row.type,
        "node_id": row.node_id,
        "hostname": hostname,
        "status": row.status,
        "desired": row.desired,
        "generation": row.generation,
        "container_id": row.container_id,
        "pid": row.pid,
        "exit_code": row.exit_code,
        "resource_usage": usage,
        "resource_requirements": _loads(row.resource_requirements, {}),
        "affinity": _loads(row.affinity, {}),
        "image_name": row.image_name,
        "image_url": row.image_url,
        "command": row.command,
        "environment_keys": sorted(_loads(row.environment_variables, {})),
        "config_paths": [f.get("path") for f in _loads(row.config_files, []) if isinstance(f, dict)],
        "started_at": iso(row.started_at),
        "updated_at": iso(row.updated_at),
        "usage_at": iso(row.usage_at),
        "error_message": row.error_message,
    }


def components(business_id: str) -> list[dict[str, Any]]:
    """Every component of the business, in the order of its request."""
    get(business_id)
    query = (
        BusinessComponent.select(BusinessComponent, Node.id, Node.hostname)
        .join(Node, JOIN.LEFT_OUTER)
        .where(BusinessComponent.business == business_id)
        .order_by(BusinessComponent.id)
    )
    return [component_json(row, row.node.hostname if row.node_id else None) for row in query]


def _history(business_id: str) -> list[dict[str, Any]]:
    rows = (
        BusinessEvent.select()
        .where(BusinessEvent.business == business_id)
        .order_by(BusinessEvent.id.desc())
        .limit(HISTORY_LIMIT)
    )
    return [
        {
            "at": iso(e.at),
            "component_id": e.component_id,
            "generation": e.generation,
            "from": e.from_status,
            "to": e.to_status,
            "reason": e.reason,
            "actor": e.actor,
        }
        for e in rows
    ]


def _summary(business: Business) -> dict[str, Any]:
    return {
        "business_id": business.business_id,
        "business_name": business.business_name,
        "status": business.status,
        "message": business.message,
        "rollback_on_failure": bool(_loads(business.spec, {}).get("rollback_on_failure", True)),
        "created_by": business.created_by,
        "created_at": iso(business.created_at),
        "updated_at": iso(business.updated_at),
    }


def detail(business_id: str) -> dict[str, Any]:
    """One business with its components and recent transitions."""
    business = get(business_id)
    return {**_summary(business), "components": components(business_id), "history": _history(business_id)}


def listing(page: int, page_size: int, status: str | None, name: str | None) -> dict[str, Any]:
    """A page of businesses, newest first, with a count of their components per state."""
    query = Business.select()
    if status:
        query = query.where(Business.status == status)
    if name:
        query = query.where(Business.business_name.contains(name))
    total, businesses = page_of(query, page, page_size, Business.created_at.desc(), Business.business_id)
    counts = status_counts(BusinessComponent.business, BusinessComponent.status, [b.business_id for b in businesses])
    items = [
        {
            **_summary(b),
            "component_count": sum(counts[b.business_id].values()),
            "component_states": counts[b.business_id],
        }
        for b in businesses
    ]
    return {"businesses": items, "total": total, "page": page, "page_size": page_size}
