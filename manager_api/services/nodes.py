"""Nodes: the live list of GET /api/task/node, loads for placement, persisted online/offline changes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from peewee import fn
from redis import Redis

from shared import heartbeat
from shared.states import NodeStatus

from .. import db
from ..db import database
from ..heartbeats import read_fields
from ..models import DeploymentTask, Node
from . import audit
from .lifecycle import LIVE_STATES
from .placement import NodeLoad
from .serialize import from_unix, iso

logger = logging.getLogger(__name__)


def _percent(beat: dict[str, str], name: str) -> float:
    try:
        return float(beat.get(name) or 0.0)
    except ValueError:
        return 0.0


def _iso_from_db(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return iso(value)


def list_nodes(redis: Redis, offline_after_intervals: int) -> list[dict[str, Any]]:
    """Every registered node with its live status and resources (one query, one Redis round trip).

    Written for speed (1,000 nodes well under 20 ms): raw cursor rows, no per-node model objects.
    """
    query = Node.select(Node.id, Node.hostname, Node.ip, Node.last_seen).order_by(Node.registered_at, Node.id)
    rows = database.execute(query).fetchall()
    now, beats = read_fields(redis, [row[0] for row in rows])
    online_code, offline_code = int(NodeStatus.ONLINE), int(NodeStatus.OFFLINE)
    out = []
    for node_id, hostname, ip, last_seen in rows:
        beat = beats[node_id]
        ts = beat.get("ts")
        if heartbeat.is_online(beat, now, offline_after_intervals):
            status = online_code
            cpu = round(_percent(beat, "cpu_usage_percent"))
            memory = round(_percent(beat, "memory_usage_percent"))
        else:
            status, cpu, memory = offline_code, 0, 0
        seen = datetime.fromtimestamp(float(ts), UTC).isoformat().replace("+00:00", "Z") if ts else None
        out.append(
            {
                "ip": ip,
                "status": status,
                "resources": f"cpu_usage_percent:{cpu},memory_usage_percent:{memory}",
                "id": node_id,
                "hostname": hostname,
                "last_heartbeat": seen or _iso_from_db(last_seen),
            }
        )
    return out


def active_task_counts() -> dict[str, int]:
    """Tasks still live per node id."""
    query = (
        DeploymentTask.select(DeploymentTask.node, fn.COUNT(DeploymentTask.id))
        .where(DeploymentTask.state.in_([s.value for s in LIVE_STATES]))
        .group_by(DeploymentTask.node)
        .tuples()
    )
    return {node_id: count for node_id, count in query}


def node_loads(redis: Redis, offline_after_intervals: int) -> list[NodeLoad]:
    """Every node as placement sees it: online, cpu%, memory%, active tasks."""
    rows = list(Node.select(Node.id, Node.hostname, Node.ip).tuples())
    now, beats = read_fields(redis, [row[0] for row in rows])
    counts = active_task_counts()
    loads = []
    for node_id, hostname, ip in rows:
        beat = beats.get(node_id, {})
        loads.append(
            NodeLoad(
                id=node_id,
                hostname=hostname,
                ip=ip,
                online=heartbeat.is_online(beat, now, offline_after_intervals),
                cpu_percent=_percent(beat, "cpu_usage_percent"),
                memory_percent=_percent(beat, "memory_usage_percent"),
                active_tasks=counts.get(node_id, 0),
            )
        )
    return loads


def refresh_statuses(redis: Redis, offline_after_intervals: int) -> list[tuple[str, str, NodeStatus]]:
    """Persist status and last_seen changes from the heartbeats; returns the (id, hostname, status) flips."""
    rows = list(Node.select(Node.id, Node.hostname, Node.status, Node.last_seen).tuples())
    if not rows:
        return []
    now, beats = read_fields(redis, [row[0] for row in rows])
    flips: list[tuple[str, str, NodeStatus]] = []
    updates: list[tuple[str, NodeStatus, Any]] = []
    for node_id, hostname, status, last_seen in rows:
        beat = beats.get(node_id, {})
        online = heartbeat.is_online(beat, now, offline_after_intervals)
        new_status = NodeStatus.ONLINE if online else NodeStatus.OFFLINE
        ts = beat.get("ts")
        seen = from_unix(float(ts)) if ts else last_seen
        if new_status != status or seen != last_seen:
            updates.append((node_id, new_status, seen))
        if new_status != status:
            flips.append((node_id, hostname, new_status))
    if not updates:
        return []
    with db.write_transaction():
        for node_id, new_status, seen in updates:
            Node.update(status=int(new_status), last_seen=seen).where(Node.id == node_id).execute()
        for node_id, hostname, new_status in flips:
            word = "online" if new_status == NodeStatus.ONLINE else "offline"
            audit.record("duties", f"node.{word}", node_id, {"hostname": hostname})
    for node_id, hostname, new_status in flips:
        word = "online" if new_status == NodeStatus.ONLINE else "offline"
        logger.info("node %s (%s) %s", node_id, hostname, word)
    return flips
