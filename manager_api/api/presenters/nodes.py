"""The public JSON of nodes: the manual's node list (GET /api/task/node) and the inventory (GET /api/nodes)."""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from manager_api.api import json_provider
from manager_api.api.presenters.serialize import iso
from manager_api.models import BusinessComponent
from manager_api.services.nodes import documents, manual_list
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


def _render(summary: heartbeat.Summary) -> _Beat:
    return _Beat(
        resources=f"cpu_usage_percent:{round(summary.cpu_usage_percent)},"
        f"memory_usage_percent:{round(summary.memory_usage_percent)}",
        last_heartbeat=datetime.fromtimestamp(summary.ts, UTC).isoformat().replace("+00:00", "Z"),
    )


def _node_json(row: tuple[Any, ...], summary: heartbeat.Summary | None, online: bool) -> dict[str, Any]:
    """One node of the manual's list from its row (manual_list's columns), verified summary and liveness."""
    beat = None if summary is None else _render(summary)
    labels = row[manual_list.LABELS]
    return {
        "ip": row[manual_list.IP],
        "status": int(NodeStatus.ONLINE) if online else int(NodeStatus.OFFLINE),
        "resources": beat.resources if online else OFFLINE_RESOURCES,  # type: ignore[union-attr]
        "id": row[manual_list.ID],
        "hostname": row[manual_list.HOSTNAME],
        "last_heartbeat": beat.last_heartbeat if beat else _iso_from_db(row[manual_list.LAST_SEEN]),
        "labels": {} if not labels or labels == "{}" else json.loads(labels),
        # Online and its worker takes jobs (not waiting to reconnect to Redis): what placement needs.
        "ready": online and summary.taking_jobs,  # type: ignore[union-attr]
    }


def manual_list_json(listing: NodeRows) -> list[dict[str, Any]]:
    """The manual's node list: each node's status and resources, as manual_list_body encodes it."""
    live = listing.live
    return [
        _node_json(row, live.summaries.get(row[manual_list.ID]), row[manual_list.ID] in live.online)
        for row in listing.rows
    ]


class _Answer(NamedTuple):
    """The node list as last answered, by position: each node's id, row, summary, liveness and encoded part."""

    ids: Sequence[str]
    rows: list[tuple[Any, ...]]
    summaries: Sequence[heartbeat.Summary | None]
    online: Sequence[bool]
    parts: list[bytes]


# The node list at 10,000 nodes spent most of its time building and encoding 10,000 node objects (parsing each
# one's labels again), though a node's part of the answer changes only when its row does (a join, its labels
# set: the node revision) or its heartbeat summary or liveness does: once per interval, while the list may be
# read many times a second. Each process keeps the last answer's parts with what each was made from, and the
# next answer builds again only the parts whose sources changed (a fifth of them a second at a 5 s interval).
# The summary is compared by identity: snapshot.read hands out one object per verified summary text until the
# text (or what it is judged under) changes, and the answer kept holds it, so its id is never reused. Requests
# in several threads each build a new answer from the one they read and publish it whole.
_last = _Answer((), [], [], [], [])


def manual_list_body(listing: NodeRows) -> bytes:
    """GET /api/task/node's answer, encoded: the bytes jsonify({"nodes": manual_list_json(listing)}) writes."""
    global _last
    live, rows, last = listing.live, listing.rows, _last
    ids, summaries, online = live.ids, live.by_position, live.up  # by the rows' positions (manual_list.read)
    if ids == last.ids:  # the same nodes in the same order: find the changed ones without a Python loop
        parts = list(last.parts)
        differs = map(
            operator.or_, map(operator.is_not, summaries, last.summaries), map(operator.ne, online, last.online)
        )
        if rows is not last.rows:  # the rows kept are handed out again until the revision moves (manual_list)
            differs = map(operator.or_, differs, map(operator.is_not, rows, last.rows))
        changed = itertools.compress(itertools.count(), differs)
        for i in changed:
            if summaries[i] is last.summaries[i] and online[i] == last.online[i] and rows[i] == last.rows[i]:
                continue  # the same row read again (last_seen read fresh, or the revision moved for another node)
            parts[i] = _encode(_node_json(rows[i], summaries[i], online[i]))
    else:  # nodes joined or were forgotten: match each node with its part of the last answer by id
        where = dict(zip(last.ids, itertools.count()))
        parts = []
        for row, summary, up in zip(rows, summaries, online, strict=True):
            at = where.get(row[0])
            if at is None or summary is not last.summaries[at] or up != last.online[at] or row != last.rows[at]:
                parts.append(_encode(_node_json(row, summary, up)))
            else:
                parts.append(last.parts[at])
    _last = _Answer(ids, rows, summaries, online, parts)
    return _joined(parts)


def _joined(parts: list[bytes]) -> bytes:
    """``{"nodes":[part,part...]}`` and a newline, as jsonify ends an answer: the 2.3 MB at 10,000 nodes copied
    once (the head and tail go with the first and last parts) rather than three times."""
    if len(parts) < 2:
        return b'{"nodes":[' + b"".join(parts) + b"]}\n"
    return b",".join([b'{"nodes":[' + parts[0], *parts[1:-1], parts[-1] + b"]}\n"])


def _encode(node: dict[str, Any]) -> bytes:
    """One node as the API's JSON provider writes it (its orjson options; the json module past orjson's reach,
    as a label value of a 20-digit number)."""
    try:
        # Copied to its own size: orjson hands back its 4 KiB buffer, 40 MB kept for 10,000 parts of ~240 bytes.
        return bytes(memoryview(orjson.dumps(node, option=json_provider.OPTIONS)))
    except orjson.JSONEncodeError:
        return json.dumps(node, ensure_ascii=False).encode()


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
