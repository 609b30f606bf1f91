"""A node's document: what GET /api/nodes shows of each node, and what node queries (document 003 §5.1.2) match.

One function builds it, so that the inventory, ``?q=``, fleet task targets ``query:...`` and app placement all
read the same fields and never disagree on what a query selects. Beside the inventory's own fields it holds, at
its top level, the node document of §5.1.1 that the agent sent at its last join (``agentAddress``, ``os``,
``memory``, ``networks``, ``disks``) and the node's effective ``tags``.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from manager_api.services.nodes import inventory
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes import tags as node_tags
from manager_api.services.nodes.inventory import NodeView
from manager_api.services.nodes.query import NodeQuery
from manager_api.services.serialize import from_unix, iso

FACT_KEYS = ("cpu_count", "memory_total_mb", "gpu_count", "gpus", "os", "distro", "kernel", "arch", "addresses")
"""The facts shown; the rest (boot time, python version, labels) is either noise or shown elsewhere."""


MAX_ENTRIES = 64
"""Most networks and disks shown of one node (the agent sends no more; an older or foreign one might)."""

OS_KEYS = ("name", "version", "cpus", "architecture")
MEMORY_KEYS = ("total", "ram")
NETWORK_KEYS = ("address", "name", "mtu", "broadcast", "netmask", "hwaddr", "type")
DISK_KEYS = ("dirName", "devName", "sysTypeName", "option", "total")
"""The fields of §5.1.1 kept of what the agent sent: scalars only, nothing else an agent might add."""

MIB = 1024 * 1024


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _picked(raw: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """The scalar ``keys`` of ``raw`` (an object of the agent's node document), absent ones null."""
    raw = raw if isinstance(raw, dict) else {}
    return {key: raw.get(key) if _scalar(raw.get(key)) else None for key in keys}


def _entries(raw: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return (
        [_picked(entry, keys) for entry in raw[:MAX_ENTRIES] if isinstance(entry, dict)]
        if isinstance(raw, list)
        else []
    )


def node_document(facts: dict[str, Any], ip: str) -> dict[str, Any]:
    """The §5.1.1 fields of a node (but hostname and tags) from the node document in its facts; an agent older
    than that document gets what its plain facts tell (os, cpus, memory, addresses), so queries still find it."""
    sent = facts.get("node")
    if isinstance(sent, dict):
        address = sent.get("agentAddress")
        return {
            "agentAddress": address if isinstance(address, str) else None,
            "os": _picked(sent.get("os"), OS_KEYS),
            "memory": _picked(sent.get("memory"), MEMORY_KEYS),
            "networks": _entries(sent.get("networks"), NETWORK_KEYS),
            "disks": _entries(sent.get("disks"), DISK_KEYS),
        }
    memory_mb = facts.get("memory_total_mb")
    memory = memory_mb * MIB if isinstance(memory_mb, int) else None
    listed = facts.get("addresses")
    addresses: list[Any] = listed if isinstance(listed, list) else [ip]
    legacy_os = {
        "name": facts.get("os"),
        "version": facts.get("kernel"),
        "cpus": facts.get("cpu_count"),
        "architecture": facts.get("arch"),
    }
    return {
        "agentAddress": None,
        "os": _picked(legacy_os, OS_KEYS),
        "memory": {"total": memory, "ram": memory},
        "networks": [_picked({"address": address}, NETWORK_KEYS) for address in addresses[:MAX_ENTRIES]],
        "disks": [],
    }


def resources(cpu: float, memory: int, gpus: int) -> dict[str, Any]:
    return {"cpu_cores": round(cpu, 3), "memory_mb": memory, "gpus": gpus}


def document(view: NodeView) -> dict[str, Any]:
    """One node of the inventory: facts, labels, capacity, what is reserved and free."""
    node_id, hostname, ip, facts_text, labels, api_labels, version, registered_at, last_seen, api_tags_text = view.row
    facts, beat, online = view.facts, view.beat, view.online
    cpu, memory, gpus = view.capacity
    cpu_held, memory_held, gpus_held = view.held
    shown = {key: facts[key] for key in FACT_KEYS if key in facts}
    shown.setdefault("gpu_count", gpus)
    shown.setdefault("gpus", [])
    shown.setdefault("addresses", [ip])
    agent_tags = node_tags.valid_agent_tags(node_id, facts.get("node"))
    api_tags = node_tags.loads(api_tags_text)
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
        **node_document(facts, ip),
        "tags": node_tags.effective(agent_tags, api_tags),
        "agent_tags": agent_tags,
        "api_tags": api_tags,
    }


def matching(redis: Redis, offline_after_intervals: int, query: NodeQuery | None) -> list[dict[str, Any]]:
    """The document of every node (online or not) that ``query`` selects (every node for None)."""
    shown = [document(view) for view in inventory.listing(redis, offline_after_intervals)]
    return shown if query is None else [node for node in shown if query.matches(node)]
