"""A node's document: what GET /api/nodes shows of each node, and what node queries (document 003 §5.1.2) match.

One function builds it, so that the inventory, ``?q=``, fleet task targets ``query:...`` and app placement all
read the same fields and never disagree on what a query selects.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from manager_api.services.nodes import inventory
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes.inventory import NodeView
from manager_api.services.nodes.query import NodeQuery
from manager_api.services.serialize import from_unix, iso

FACT_KEYS = ("cpu_count", "memory_total_mb", "gpu_count", "gpus", "os", "distro", "kernel", "arch", "addresses")
"""The facts shown; the rest (boot time, python version, labels) is either noise or shown elsewhere."""


def resources(cpu: float, memory: int, gpus: int) -> dict[str, Any]:
    return {"cpu_cores": round(cpu, 3), "memory_mb": memory, "gpus": gpus}


def document(view: NodeView) -> dict[str, Any]:
    """One node of the inventory: facts, labels, capacity, what is reserved and free."""
    node_id, hostname, ip, facts_text, labels, api_labels, version, registered_at, last_seen = view.row
    facts, beat, online = view.facts, view.beat, view.online
    cpu, memory, gpus = view.capacity
    cpu_held, memory_held, gpus_held = view.held
    shown = {key: facts[key] for key in FACT_KEYS if key in facts}
    shown.setdefault("gpu_count", gpus)
    shown.setdefault("gpus", [])
    shown.setdefault("addresses", [ip])
    return {
        "id": node_id,
        "hostname": hostname,
        "ip": ip,
        "status": "online" if online else "offline",
        "last_heartbeat": iso(from_unix(beat.ts)) if beat else iso(last_seen),
        "cpu_usage_percent": round(beat.cpu_usage_percent, 1) if online and beat else 0.0,
        "memory_usage_percent": round(beat.memory_usage_percent, 1) if online and beat else 0.0,
        "labels": node_labels.loads(labels),
        "agent_labels": node_labels.agent_labels_of(node_id, facts_text),
        "api_labels": node_labels.loads(api_labels),
        "facts": shown,
        "capacity": resources(cpu, memory, gpus),
        "reserved": resources(cpu_held, memory_held, gpus_held),
        "free": resources(max(cpu - cpu_held, 0.0), max(memory - memory_held, 0), max(gpus - gpus_held, 0)),
        "version": version,
        "registered_at": iso(registered_at),
    }


def matching(redis: Redis, offline_after_intervals: int, query: NodeQuery | None) -> list[dict[str, Any]]:
    """The document of every node (online or not) that ``query`` selects (every node for None)."""
    shown = [document(view) for view in inventory.listing(redis, offline_after_intervals)]
    return shown if query is None else [node for node in shown if query.matches(node)]
