"""GET /api/nodes, PUT/PATCH /api/nodes/{id}/labels, PUT/DELETE /api/nodes/{id}/tags: what each node is, offers,
and holds for businesses.

The manual's GET /api/task/node stays in nodes/manual_list.py, untouched; this is the richer inventory the
placement works from: facts, effective labels, capacity, reservations and the components placed.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import compress, count
from typing import Any, NamedTuple

from redis import Redis

from manager_api import db, prepared
from manager_api.models import Business, BusinessComponent, Node
from manager_api.services import audit
from manager_api.services.errors import Conflict, NotFound
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes import revision, snapshot
from manager_api.services.nodes import tags as node_tags
from manager_api.services.nodes.presence import known
from manager_api.services.placement.candidates import capacity_from_facts, reservations
from shared import heartbeat

logger = logging.getLogger(__name__)

NOT_FOUND = "Node not found"

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
    Node.api_tags,
)


class NodeView(NamedTuple):
    """One node as the inventory sees it: its row (the fields read, in order), its parsed facts, its capacity
    and what active components hold of it (cpu cores, memory MB, GPUs), its last heartbeat, and liveness."""

    row: tuple[Any, ...]
    facts: dict[str, Any]
    capacity: tuple[float, int, int]
    held: tuple[float, int, int]
    beat: heartbeat.Summary | None
    online: bool


@dataclass(frozen=True)
class NodeDetail:
    """One node of the inventory with the business components placed on it (their business joined)."""

    view: NodeView
    components: list[BusinessComponent]


# Facts change only when a node joins, and parsing them is most of the cost of listing 10,000 nodes: each
# process keeps the parse of the facts text it last saw per node (a changed text is parsed again).
_parsed: dict[str, tuple[str, dict[str, Any], tuple[float, int, int]]] = {}


def parsed_facts(node_id: str, facts_text: str) -> tuple[dict[str, Any], tuple[float, int, int]]:
    """The parsed facts of a node and the capacity they give (callers must not change them: they are shared)."""
    cached = _parsed.get(node_id)
    if cached is not None and cached[0] == facts_text:
        return cached[1], cached[2]
    try:
        facts = json.loads(facts_text or "{}")
    except ValueError:
        facts = {}
    if not isinstance(facts, dict):
        facts = {}
    capacity = capacity_from_facts(facts)
    _parsed[node_id] = (facts_text, facts, capacity)
    return facts, capacity


def _view(row: tuple[Any, ...], live: snapshot.Snapshot, held: Mapping[str, tuple[float, int, int]]) -> NodeView:
    node_id, facts_text = row[0], row[3]
    facts, capacity = parsed_facts(node_id, facts_text)
    return NodeView(
        row, facts, capacity, held.get(node_id, (0.0, 0, 0)), live.summary(node_id), live.is_online(node_id)
    )


# By identity: a peewee field's == makes an expression (always true), so list.index cannot find it.
_REGISTERED_AT = next(i for i, field in enumerate(_FIELDS) if field is Node.registered_at)
_LAST_SEEN = next(i for i, field in enumerate(_FIELDS) if field is Node.last_seen)


def _when(value: Any) -> Any:
    """A datetime column as read raw: SQLite gives text (PostgreSQL's driver a datetime already)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _rows(query: Any) -> list[tuple[Any, ...]]:
    """The query's rows as tuples, read through the database cursor: peewee's own row conversion costs twice
    the read itself at 10,000 nodes, and only the two datetime columns need one."""
    sql, params = query.sql()
    rows = []
    for raw in db.database.execute_sql(sql, params):
        row = list(raw)
        row[_REGISTERED_AT], row[_LAST_SEEN] = _when(row[_REGISTERED_AT]), _when(row[_LAST_SEEN])
        rows.append(tuple(row))
    return rows


# The rows change only with the node revision (revision.py): each process keeps the last rows it read with the
# revision read just before them, and reads them again only once the revision moves. A change committed
# between the two reads is seen at the next call, as the revision moved after the one kept. Kept with the
# database's name too: every database's revision counts from 0 (a process given another one, as tests are).
_rows_kept: tuple[str, tuple[int, list[tuple[Any, ...]]]] | None = None


def current_rows() -> tuple[int | None, list[tuple[Any, ...]]]:
    """The node revision and every known node's row under it (_FIELDS, in join order; the revision None when
    the engine keeps none). A row's last_seen may be older than the database's."""
    global _rows_kept
    now = revision.current()
    name = str(db.database.obj.database)
    kept = _rows_kept
    if now is not None and kept is not None and kept[0] == name and kept[1][0] == now:
        return kept[1]
    rows = _rows(Node.select(*_FIELDS).where(known()).order_by(Node.registered_at, Node.id))
    _rows_kept = None if now is None else (name, (now, rows))
    if len(_parsed) > 2 * len(rows) + 100:  # forgotten nodes: keep only those still listed
        present = {row[0] for row in rows}
        for node_id in [node_id for node_id in _parsed if node_id not in present]:
            _parsed.pop(node_id, None)
    return now, rows


LAST_SEEN_BATCH = 500
"""Nodes whose last_seen is read in one statement (SQLite allows a few hundred parameters at least)."""


def fresh_last_seen(
    rows: list[tuple[Any, ...]], live: snapshot.Snapshot, at: int = _LAST_SEEN
) -> list[tuple[Any, ...]]:
    """``rows`` (their id first, their last_seen at ``at``; ``live`` read of their ids in their order) with the
    database's last_seen for nodes without a heartbeat summary (the only ones whose document shows it): kept rows
    leave it behind, as the duties' writes of it do not move the revision."""
    # Scanned in C by position (the node list reads 10,000 rows at every call, nearly all with a summary), the
    # statements' text built once per batch size (peewee built an IN list of 500 values at every call: 3 ms).
    without = list(compress(count(), map(operator.not_, live.by_position)))
    if not without:
        return rows
    stale = [rows[i][0] for i in without]
    seen: dict[str, Any] = {}
    for start in range(0, len(stale), LAST_SEEN_BATCH):
        batch = stale[start : start + LAST_SEEN_BATCH]
        seen.update(prepared.rows(("last_seen of nodes", len(batch)), batch, functools.partial(_last_seen_of, batch)))
    fresh = list(rows)
    for i in without:
        row = rows[i]
        if row[0] in seen:
            fresh[i] = (*row[:at], _when(seen[row[0]]), *row[at + 1 :])
    return fresh


def _last_seen_of(node_ids: list[str]) -> Any:
    return Node.select(Node.id, Node.last_seen).where(Node.id.in_(node_ids))


def views(redis: Redis, rows: list[tuple[Any, ...]], offline_after_intervals: int) -> list[NodeView]:
    """``rows`` (from current_rows) with their facts, capacity, reservations, heartbeat and liveness: one Redis
    read of those nodes' heartbeats, however many nodes the manager knows."""
    held = reservations()
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    return [_view(row, live, held) for row in fresh_last_seen(rows, live)]


def listing(redis: Redis, offline_after_intervals: int) -> list[NodeView]:
    """Every node, in join order, with facts, labels, capacity and what active components reserve."""
    return views(redis, current_rows()[1], offline_after_intervals)


def _components_on(node_id: str) -> list[BusinessComponent]:
    query = (
        BusinessComponent.select(BusinessComponent, Business.business_id, Business.business_name)
        .join(Business)
        .where(BusinessComponent.node == node_id)
        .order_by(BusinessComponent.business, BusinessComponent.component_id)
    )
    return list(query)


def require(node_id: str) -> None:
    """NotFound unless ``node_id`` is a known node (joined, not forgotten)."""
    if not Node.select(Node.id).where(Node.id == node_id, known()).exists():
        raise NotFound(NOT_FOUND)


def detail(redis: Redis, node_id: str, offline_after_intervals: int) -> NodeDetail:
    """One node as in the list and every component placed on it (404)."""
    row = Node.select(*_FIELDS).where(Node.id == node_id, known()).tuples().first()
    if row is None:
        raise NotFound(NOT_FOUND)
    live = snapshot.read(redis, [node_id], offline_after_intervals)
    return NodeDetail(_view(row, live, reservations()), _components_on(node_id))


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


def set_api_tags(node_id: str, tags: list[str] | None, actor: str) -> None:
    """Set the tags of a node through the API, which then win over its agent's at every join; None hands them
    back to the agent (404 when unknown). Audited as node.tags."""
    with db.write_transaction():
        row = Node.select(Node.api_tags).where(Node.id == node_id, known()).tuples().first()
        if row is None:
            raise NotFound(NOT_FOUND)
        previous = node_tags.loads(row[0])
        Node.update(api_tags=node_tags.dumps(tags)).where(Node.id == node_id).execute()
        audit.record(actor, "node.tags", node_id, {"api_tags": tags, "previous": previous})
    logger.info("node %s: API tags set to %s by %s (None: the agent's)", node_id, tags, actor)


def forget_secret(node_id: str, actor: str) -> None:
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
