"""The manual's node list (GET /api/task/node): every known node's row and its liveness, read for speed."""

from __future__ import annotations

from typing import Any, NamedTuple

from redis import Redis

from manager_api import db
from manager_api.models import Node
from manager_api.services.nodes import inventory, revision, snapshot
from manager_api.services.nodes.presence import known

_FIELDS = (Node.id, Node.hostname, Node.ip, Node.last_seen, Node.labels)
ID, HOSTNAME, IP, LAST_SEEN, LABELS = range(len(_FIELDS))
"""Where each column sits in a row of NodeRows.rows."""


class NodeRows(NamedTuple):
    """Every known node as a raw (id, hostname, ip, last_seen, labels) row, in join order, and their liveness
    (read of the rows' ids in their order: ``live``'s lists are by the rows' positions)."""

    rows: list[tuple[Any, ...]]
    live: snapshot.Snapshot


# The rows change only with the node revision (revision.py), as the inventory's do: each process keeps the last
# rows it read with the revision read just before them (and the database's name: every database's revision
# counts from 0). Only these five columns: the inventory's rows carry every node's facts, a kilobyte each.
# Their ids are kept too, as the one tuple snapshot.read keeps its judgments under.
_rows_kept: tuple[str, int, list[tuple[Any, ...]], tuple[str, ...]] | None = None


def _current_rows() -> tuple[list[tuple[Any, ...]], tuple[str, ...]]:
    global _rows_kept
    now = revision.current()
    name = str(db.database.obj.database)
    kept = _rows_kept
    if now is not None and kept is not None and kept[0] == name and kept[1] == now:
        return kept[2], kept[3]
    query = Node.select(*_FIELDS).where(known()).order_by(Node.registered_at, Node.id)
    sql, params = query.sql()
    rows = list(db.database.execute_sql(sql, params))  # raw cursor rows: Peewee's conversion cost more than the read
    ids = tuple(row[ID] for row in rows)
    _rows_kept = None if now is None else (name, now, rows, ids)
    return rows, ids


def read(redis: Redis, offline_after_intervals: int) -> NodeRows:
    """Every registered node with its liveness: one Redis round trip, and the rows read again only once the node
    revision moved; the last_seen of nodes without a heartbeat summary, the only ones the list shows it of, is
    read fresh (the duties' writes of it do not move the revision)."""
    rows, ids = _current_rows()
    live = snapshot.read(redis, ids, offline_after_intervals)
    return NodeRows(inventory.fresh_last_seen(rows, live, LAST_SEEN), live)
