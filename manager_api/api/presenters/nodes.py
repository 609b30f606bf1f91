"""The public JSON of nodes: the manual's node list (GET /api/task/node) and the inventory (GET /api/nodes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from manager_api.api.presenters.serialize import iso
from manager_api.models import BusinessComponent
from manager_api.services.nodes import documents
from manager_api.services.nodes.inventory import NodeDetail, NodeView
from manager_api.services.nodes.manual_list import NodeRows
from manager_api.services.placement.candidates import ACTIVE_COMPONENT_STATES
from shared import heartbeat
from shared.states import NodeStatus

OFFLINE_RESOURCES = "cpu_usage_percent:0,memory_usage_percent:0"
"""What an offline node shows, as the manual's example does."""


def _iso_from_db(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso(value)


class _Beat(NamedTuple):
    """A node's last heartbeat rendered for the node list."""

    resources: str
    last_heartbeat: str


# Rendering heartbeats costs more than the rest of the node list, and each changes once per interval while
# the list may be read many times a second: each process keeps the rendering of the last summary it saw.
_rendered: dict[str, tuple[bytes, _Beat]] = {}


def _render(summary: heartbeat.Summary) -> _Beat:
    return _Beat(
        resources=f"cpu_usage_percent:{round(summary.cpu_usage_percent)},"
        f"memory_usage_percent:{round(summary.memory_usage_percent)}",
        last_heartbeat=datetime.fromtimestamp(summary.ts, UTC).isoformat().replace("+00:00", "Z"),
    )


def manual_list_json(listing: NodeRows) -> list[dict[str, Any]]:
    """The manual's node list: each node's status and resources (a hot path: no per-node objects)."""
    live = listing.live
    online_code, offline_code = int(NodeStatus.ONLINE), int(NodeStatus.OFFLINE)
    summaries, online_ids = live.summaries, live.online
    out = []
    for node_id, hostname, ip, last_seen, labels in listing.rows:
        summary = summaries.get(node_id)
        beat = None
        if summary is not None:
            raw = live.raw[node_id]
            cached = _rendered.get(node_id)
            if cached is None or cached[0] != raw:
                cached = _rendered[node_id] = (raw, _render(summary))
            beat = cached[1]
        online = node_id in online_ids
        out.append(
            {
                "ip": ip,
                "status": online_code if online else offline_code,
                "resources": beat.resources if online else OFFLINE_RESOURCES,  # type: ignore[union-attr]
                "id": node_id,
                "hostname": hostname,
                "last_heartbeat": beat.last_heartbeat if beat else _iso_from_db(last_seen),
                "labels": {} if not labels or labels == "{}" else json.loads(labels),
                # Online and its worker takes jobs (not waiting to reconnect to Redis): what placement needs.
                "ready": online and summary.taking_jobs,  # type: ignore[union-attr]
            }
        )
    return out


def inventory_json(views: list[NodeView]) -> list[dict[str, Any]]:
    """Every node of the inventory."""
    return [documents.document(view) for view in views]


def component_json(c: BusinessComponent) -> dict[str, Any]:
    """A business component placed on a node, with its business joined."""
    return {
        "business_id": c.business.business_id,
        "business_name": c.business.business_name,
        "component_id": c.component_id,
        "component_name": c.component_name,
        "type": c.type,
        "status": c.status,
        "desired": c.desired,
        "generation": c.generation,
        "pid": c.pid,
        "container_id": c.container_id,
        # What it holds on this node: nothing once it ended or an update dropped it.
        "reserves": c.status in ACTIVE_COMPONENT_STATES,
        "requested": documents.resources(c.cpu_cores, c.memory_mb, c.gpus),
        "updated_at": iso(c.updated_at),
    }


def detail_json(detail: NodeDetail) -> dict[str, Any]:
    """One node as in the inventory, plus every component placed on it."""
    return {**documents.document(detail.view), "components": [component_json(c) for c in detail.components]}
