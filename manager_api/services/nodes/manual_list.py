"""The manual's node list (GET /api/task/node): every known node's row and its liveness, read for speed."""

from __future__ import annotations

from typing import Any, NamedTuple

from redis import Redis

from manager_api.services.nodes import inventory, snapshot

ID, HOSTNAME, IP, LABELS, LAST_SEEN = (
    inventory.FIELD_INDEX[name] for name in ("id", "hostname", "ip", "labels", "last_seen")
)
"""Where the node list's columns sit in a row (the inventory's rows: inventory.current_rows)."""


class NodeRows(NamedTuple):
    """Every known node's row (inventory.current_rows: read ``row[ID]``, ``row[LABELS]``...), in join order,
    and their liveness."""

    rows: list[tuple[Any, ...]]
    live: snapshot.Snapshot


def read(redis: Redis, offline_after_intervals: int) -> NodeRows:
    """Every registered node with its liveness: one Redis round trip, and the rows read again only once the node
    revision moved (inventory.current_rows), as they are the inventory's; the last_seen of nodes without a
    heartbeat summary, the only ones the list shows it of, is read fresh."""
    rows = inventory.current_rows()[1]
    live = snapshot.read(redis, [row[ID] for row in rows], offline_after_intervals)
    return NodeRows(inventory.fresh_last_seen(rows, live), live)
