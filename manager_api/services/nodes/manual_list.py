"""The manual's node list (GET /api/task/node): every node with its live status and resources."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from redis import Redis

from manager_api.db import database
from manager_api.models import Node
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.serialize import iso
from shared import heartbeat
from shared.states import NodeStatus


def _iso_from_db(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso(value)


OFFLINE_RESOURCES = "cpu_usage_percent:0,memory_usage_percent:0"
"""What an offline node shows, as the manual's example does."""


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


def list_nodes(redis: Redis, offline_after_intervals: int) -> list[dict[str, Any]]:
    """Every registered node with its live status and resources (one query, one Redis round trip).

    Written for speed (1,000 nodes well under 20 ms): raw cursor rows, no per-node model objects.
    """
    query = (
        Node.select(Node.id, Node.hostname, Node.ip, Node.last_seen, Node.labels)
        .where(known())
        .order_by(Node.registered_at, Node.id)
    )
    rows = database.execute(query).fetchall()
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    online_code, offline_code = int(NodeStatus.ONLINE), int(NodeStatus.OFFLINE)
    summaries, online_ids = live.summaries, live.online
    out = []
    for node_id, hostname, ip, last_seen, labels in rows:
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
