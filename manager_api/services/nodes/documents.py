"""A node's document: what GET /api/nodes shows of each node, and what node queries (document 003 §5.1.2) match.

One function builds it, so that the inventory, ``?q=``, fleet task targets ``query:...`` and app placement all
read the same fields and never disagree on what a query selects. Beside the inventory's own fields it holds, at
its top level, the node document of §5.1.1 that the agent sent at its last join (``agentAddress``, ``os``,
``memory``, ``networks``, ``disks``) and the node's effective ``tags``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from redis import Redis

from manager_api.db import database
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


DYNAMIC_FIELDS = frozenset(
    {"status", "last_heartbeat", "cpu_usage_percent", "memory_usage_percent", "reserved", "free"}
)
"""The fields of a document that change without its node's row changing (heartbeats, liveness, placements)."""


class _Static(NamedTuple):
    """The parts of a node's document that only its row (and facts) decide, built once per row."""

    row: tuple[Any, ...]
    head: dict[str, Any]  # id, hostname, ip
    middle: dict[str, Any]  # labels ... capacity
    tail: dict[str, Any]  # version, registered_at, the §5.1.1 document, tags


# Building a document costs most of a node query over 10,000 nodes, while a node's row changes only when it
# joins or its labels or tags are set: each process keeps the static parts per node, rebuilt when the row
# differs. Their dicts are shared between answers: callers must not change a document in place.
_statics: dict[str, _Static] = {}


def _static(view: NodeView) -> _Static:
    row = view.row
    cached = _statics.get(row[0])
    if cached is not None and cached.row == row:
        return cached
    node_id, hostname, ip, facts_text, labels, api_labels, version, registered_at, last_seen, api_tags_text = row
    facts = view.facts
    cpu, memory, gpus = view.capacity
    shown = {key: facts[key] for key in FACT_KEYS if key in facts}
    shown.setdefault("gpu_count", gpus)
    shown.setdefault("gpus", [])
    shown.setdefault("addresses", [ip])
    agent_tags = node_tags.valid_agent_tags(node_id, facts.get("node"))
    api_tags = node_tags.loads(api_tags_text)
    built = _Static(
        row=row,
        head={"id": node_id, "hostname": hostname, "ip": ip},
        middle={
            "labels": node_labels.loads(labels),
            "agent_labels": node_labels.agent_labels_of(node_id, facts_text),
            "api_labels": node_labels.loads(api_labels),
            "facts": shown,
            "capacity": resources(cpu, memory, gpus),
        },
        tail={
            "version": version,
            "registered_at": iso(registered_at),
            **node_document(facts, ip),
            "tags": node_tags.effective(agent_tags, api_tags),
            "agent_tags": agent_tags,
            "api_tags": api_tags,
        },
    )
    _statics[node_id] = built
    return built


def document(view: NodeView) -> dict[str, Any]:
    """One node of the inventory: facts, labels, capacity, what is reserved and free, the §5.1.1 document."""
    return _document(view, _static(view))


# Rendering a heartbeat's time was a sixth of a query answering thousands of nodes: each process keeps the
# text of the last one per node (a node's heartbeat time changes once per interval, the queries more often).
_beat_texts: dict[str, tuple[float, str | None]] = {}


def _beat_text(node_id: str, ts: float) -> str | None:
    kept = _beat_texts.get(node_id)
    if kept is not None and kept[0] == ts:
        return kept[1]
    text = iso(from_unix(ts))
    _beat_texts[node_id] = (ts, text)
    return text


def _document(view: NodeView, static: _Static) -> dict[str, Any]:
    beat, online = view.beat, view.online
    last_seen = view.row[8]
    cpu, memory, gpus = view.capacity
    cpu_held, memory_held, gpus_held = view.held
    return {
        **static.head,
        "status": "online" if online else "offline",
        "last_heartbeat": _beat_text(view.row[0], beat.ts) if beat else iso(last_seen),
        "cpu_usage_percent": round(beat.cpu_usage_percent, 1) if online and beat else 0.0,
        "memory_usage_percent": round(beat.memory_usage_percent, 1) if online and beat else 0.0,
        **static.middle,
        "reserved": resources(cpu_held, memory_held, gpus_held),
        "free": resources(max(cpu - cpu_held, 0.0), max(memory - memory_held, 0), max(gpus - gpus_held, 0)),
        **static.tail,
    }


def _static_document(static: _Static) -> dict[str, Any]:
    """What a query that reads no dynamic field sees of a node: the static parts alone."""
    return {**static.head, **static.middle, **static.tail}


# A query that reads only static fields selects the same nodes for as long as the node rows are the same (the
# node revision, revision.py): each process keeps, for the queries it saw last (operators and apps repeat
# theirs), the ids of the rows selected under the rows it holds, and then reads the heartbeats of those alone.
# Keyed by the database's name with the query: every database's revision counts from 0.
_answers: OrderedDict[tuple[str, str], tuple[int, frozenset[str]]] = OrderedDict()
ANSWERS_KEPT = 16
"""Queries whose answers a process keeps."""


def _selected_ids(revision: int | None, rows: list[tuple[Any, ...]], query: NodeQuery) -> frozenset[str]:
    key = (str(database.obj.database), query.text)
    known = _answers.pop(key, None)
    if known is not None and known[0] == revision:
        _answers[key] = known  # the most recent last
        return known[1]
    ids = frozenset(row[0] for row in rows if query.matches(_static_document(_static_of_row(row))))
    if revision is None:
        return ids
    _answers[key] = (revision, ids)
    while len(_answers) > ANSWERS_KEPT:
        _answers.popitem(last=False)
    return ids


def _static_of_row(row: tuple[Any, ...]) -> _Static:
    cached = _statics.get(row[0])
    if cached is not None and cached.row == row:
        return cached
    facts, capacity = inventory.parsed_facts(row[0], row[3])
    return _static(NodeView(row, facts, capacity, (0.0, 0, 0), None, False))


def matching(redis: Redis, offline_after_intervals: int, query: NodeQuery | None) -> list[dict[str, Any]]:
    """The document of every node (online or not) that ``query`` selects (every node for None), in join order."""
    revision, rows = inventory.current_rows()
    if len(_statics) > 2 * len(rows) + 100:  # forgotten nodes: keep only those still listed
        present = {row[0] for row in rows}
        for node_id in [node_id for node_id in _statics if node_id not in present]:
            _statics.pop(node_id, None)
            _beat_texts.pop(node_id, None)
    fields = None if query is None else query.fields()
    if query is not None and fields is not None and not fields & DYNAMIC_FIELDS:
        ids = _selected_ids(revision, rows, query)
        views = inventory.views(redis, [row for row in rows if row[0] in ids], offline_after_intervals)
        return [_document(view, _static(view)) for view in views]
    docs = (_document(view, _static(view)) for view in inventory.views(redis, rows, offline_after_intervals))
    return list(docs) if query is None else [doc for doc in docs if query.matches(doc)]


def matching_ids(redis: Redis, offline_after_intervals: int, query: NodeQuery) -> frozenset[str]:
    """The ids of the nodes (online or not) that ``query`` selects. A query of static fields alone reads no
    heartbeat and builds no document: placement wants the ids, and reads the nodes' load its own way."""
    fields = query.fields()
    if fields is not None and not fields & DYNAMIC_FIELDS:
        revision, rows = inventory.current_rows()
        return _selected_ids(revision, rows, query)
    return frozenset(doc["id"] for doc in matching(redis, offline_after_intervals, query))
