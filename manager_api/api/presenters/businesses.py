"""The public JSON of businesses: the list, one business (document 001 §3.2) with its history, its components.

Environment variable values and config file contents are never echoed (they often hold secrets): only
their names and paths.
"""

from __future__ import annotations

import json
from typing import Any

from manager_api.api.presenters.serialize import iso
from manager_api.models import Business, BusinessComponent, BusinessHistory
from manager_api.services import secret_store
from manager_api.services.businesses.reads import BusinessDetail, PlacedComponent, UsageSeries
from manager_api.services.paging import Page


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
        "secret_environment_variables": secret_store.names_of(row.secret_environment_variables),  # names only
        "config_paths": [f.get("path") for f in _loads(row.config_files, []) if isinstance(f, dict)],
        "started_at": iso(row.started_at),
        "updated_at": iso(row.updated_at),
        "usage_at": iso(row.usage_at),
        "error_message": row.error_message,
    }


def components_json(components: list[PlacedComponent]) -> list[dict[str, Any]]:
    """The components of a business (a JSON array, document 001 §5.7)."""
    return [component_json(row, hostname) for row, hostname in components]


def history_json(history: list[BusinessHistory]) -> list[dict[str, Any]]:
    """A business's transitions as its ``history`` shows them."""
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
        for e in history
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


def detail_json(detail: BusinessDetail) -> dict[str, Any]:
    """One business with its components and recent transitions."""
    return {
        **_summary(detail.business),
        "components": components_json(detail.components),
        "history": history_json(detail.history),
    }


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of businesses with a count of their components per state."""
    items = [
        {
            **_summary(b),
            "component_count": sum(page.counts[b.business_id].values()),
            "component_states": page.counts[b.business_id],
        }
        for b in page.rows
    ]
    return {"businesses": items, "total": page.total, "page": page_number, "page_size": page_size}


def usage_json(business_id: str, usage: UsageSeries) -> dict[str, Any]:
    """A business's stored usage samples on one time axis (GET /api/businesses/{id}/metrics): ``times`` in
    epoch seconds, per component its CPU percent and memory MB at each (null where it has no sample then)."""
    return {
        "business_id": business_id,
        "times": usage.times,
        "components": {
            component_id: {"cpu_percent": usage.cpu[component_id], "memory_mb": usage.memory[component_id]}
            for component_id in usage.cpu
        },
    }
