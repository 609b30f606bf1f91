"""GET /api/nodes and PUT/PATCH /api/nodes/{id}/labels: what each node is, offers, and holds for businesses.

The manual's GET /api/task/node stays in nodes/manual_list.py, untouched; this is the richer inventory the
placement works from: facts, effective labels, capacity, reservations and the components placed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.models import Business, BusinessComponent, Node
from manager_api.services import audit
from manager_api.services.errors import Conflict, NotFound
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.placement.candidates import ACTIVE_COMPONENT_STATES, capacity_from_facts, reservations
from manager_api.services.serialize import from_unix, iso

logger = logging.getLogger(__name__)

NOT_FOUND = "Node not found"

FACT_KEYS = ("cpu_count", "memory_total_mb", "gpu_count", "gpus", "os", "distro", "kernel", "arch", "addresses")
"""The facts shown; the rest (boot time, python version, labels) is either noise or shown elsewhere."""

_FIELDS = (
    Node.id,
    Node.hostname,
    Node.ip,
    Node.facts,
    Node.labels,
    Node.api_labels,
    Node.version,
    Node.registered_at,
    Node.last_seen,
)


def _resources(cpu: float, memory: int, gpus: int) -> dict[str, Any]:
    return {"cpu_cores": round(cpu, 3), "memory_mb": memory, "gpus": gpus}


def _view(
    row: tuple[Any, ...],
    live: snapshot.Snapshot,
    held: Mapping[str, tuple[float, int, int]],
) -> dict[str, Any]:
    node_id, hostname, ip, facts_text, labels, api_labels, version, registered_at, last_seen = row
    try:
        facts = json.loads(facts_text or "{}")
    except ValueError:
        facts = {}
    if not isinstance(facts, dict):
        facts = {}
    cpu, memory, gpus = capacity_from_facts(facts)
    cpu_held, memory_held, gpus_held = held.get(node_id, (0.0, 0, 0))
    beat = live.summary(node_id)
    online = live.is_online(node_id)
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
        "capacity": _resources(cpu, memory, gpus),
        "reserved": _resources(cpu_held, memory_held, gpus_held),
        "free": _resources(max(cpu - cpu_held, 0.0), max(memory - memory_held, 0), max(gpus - gpus_held, 0)),
        "version": version,
        "registered_at": iso(registered_at),
    }


def listing(redis: Redis, offline_after_intervals: int) -> list[dict[str, Any]]:
    """Every node, in join order, with facts, labels, capacity and what active components reserve."""
    rows = list(Node.select(*_FIELDS).where(known()).order_by(Node.registered_at, Node.id).tuples())
    held = reservations()
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    return [_view(row, live, held) for row in rows]


def _components_on(node_id: str) -> list[dict[str, Any]]:
    query = (
        BusinessComponent.select(BusinessComponent, Business.business_id, Business.business_name)
        .join(Business)
        .where(BusinessComponent.node == node_id)
        .order_by(BusinessComponent.business, BusinessComponent.component_id)
    )
    return [
        {
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
            "requested": _resources(c.cpu_cores, c.memory_mb, c.gpus),
            "updated_at": iso(c.updated_at),
        }
        for c in query
    ]


def detail(redis: Redis, node_id: str, offline_after_intervals: int) -> dict[str, Any]:
    """One node as in the list, plus its live heartbeat figures and every component placed on it (404)."""
    row = Node.select(*_FIELDS).where(Node.id == node_id, known()).tuples().first()
    if row is None:
        raise NotFound(NOT_FOUND)
    live = snapshot.read(redis, [node_id], offline_after_intervals)
    out = _view(row, live, reservations())
    out["components"] = _components_on(node_id)
    return out


LabelChange = Callable[[dict[str, str]], dict[str, str]]
"""The new API labels of a node given its current ones."""


def _change_api_labels(node_id: str, change: LabelChange, actor: str, detail: Mapping[str, Any]) -> None:
    """Write the API labels ``change`` makes of a node's current ones and its effective labels (404 when
    unknown or forgotten); audited as node.labels with ``detail``."""
    with db.write_transaction():
        row = Node.select(Node.facts, Node.api_labels).where(Node.id == node_id, known()).tuples().first()
        if row is None:
            raise NotFound(NOT_FOUND)
        facts_text, previous_text = row
        previous = node_labels.loads(previous_text)
        labels = change(previous)
        if len(labels) > node_labels.MAX_LABELS:
            # A well-formed patch that, on top of what the node holds, makes too many: a conflict, not a 400.
            raise Conflict(
                f"Node {node_id} would hold {len(labels)} API labels, at most {node_labels.MAX_LABELS}: remove some "
                "in the same patch (null) or replace them all with PUT",
            )
        merged = node_labels.effective(node_labels.agent_labels_of(node_id, facts_text), labels)
        Node.update(api_labels=node_labels.dumps(labels), labels=node_labels.dumps(merged)).where(
            Node.id == node_id
        ).execute()
        audit.record(actor, "node.labels", node_id, {**detail, "api_labels": labels, "previous": previous})
    logger.info("node %s: API labels set to %s by %s (effective %s)", node_id, labels, actor, merged)


def set_api_labels(node_id: str, labels: Mapping[str, str], actor: str) -> None:
    """Replace the API-set labels of a node and recompute its effective labels (404 when unknown)."""
    _change_api_labels(node_id, lambda _previous: dict(labels), actor, {})


def patch_api_labels(node_id: str, patch: Mapping[str, str | None], actor: str) -> None:
    """Merge ``patch`` into the API-set labels of a node, a null removing its key (a JSON merge patch,
    RFC 7396), and recompute its effective labels (404 when unknown)."""

    def merge(previous: dict[str, str]) -> dict[str, str]:
        merged = dict(previous)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    _change_api_labels(node_id, merge, actor, {"patch": dict(patch)})


def forget_secret(node_id: str, actor: str) -> dict[str, Any]:
    """Let the next join under ``node_id`` set a new node secret (404 when unknown).

    For an agent that kept its node id but lost its secret (a data directory restored from an older
    backup): without this it is refused under that id for good. Audited, as any change of who may join.
    """
    with db.write_transaction():
        if not Node.select().where(Node.id == node_id, known()).exists():
            raise NotFound(NOT_FOUND)
        # forgotten_at too: left by a forget its agent's rejoin undid, with no secret it would read forgotten.
        Node.update(secret_digest=None, forgotten_at=None).where(Node.id == node_id).execute()
        audit.record(actor, "node.secret_forgotten", node_id)
    logger.warning("node %s: secret forgotten by %s; the next join under this id sets a new one", node_id, actor)
    return {"node_id": node_id, "message": "secret forgotten: the next join under this id sets a new one"}
