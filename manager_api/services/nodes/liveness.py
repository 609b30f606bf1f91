"""The duties' judging of node liveness: the one writer of Node.status (online/offline) and Node.last_seen.

The rule itself is heartbeat.Summary.online_until and the read is snapshot.read; this module persists what
they say, so that readers of the stored status (the fleet task and business upkeep that run right after it in
the same tick) agree with the live readers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.models import Node
from manager_api.services import audit
from manager_api.services.alerts import events as alerts
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.serialize import from_unix
from shared.states import NodeStatus

logger = logging.getLogger(__name__)

LAST_SEEN_PERSIST_SECONDS = 60.0
"""How stale Node.last_seen may get before the duties rewrite it; Redis has the live value."""


def stored_status(online: bool) -> int:
    """The Node.status value of a node judged online or offline (a forget stores offline too)."""
    return int(NodeStatus.ONLINE if online else NodeStatus.OFFLINE)


def _as_datetime(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


# The duties judge every node every second: at 10,000 nodes, turning each row's last_seen into a datetime
# (Peewee's row conversion) and each heartbeat time into another to compare them was most of their idle CPU.
# Rows are read raw, and each process keeps, per node, the Unix time of the last_seen text it last saw.
_seen_unix: dict[str, tuple[Any, float]] = {}


def _unix(node_id: str, last_seen: Any) -> float:
    """The Unix time of a node's stored last_seen (SQLite's text, PostgreSQL's naive UTC datetime)."""
    kept = _seen_unix.get(node_id)
    if kept is not None and kept[0] == last_seen:
        return kept[1]
    unix = _as_datetime(last_seen).replace(tzinfo=UTC).timestamp()
    _seen_unix[node_id] = (last_seen, unix)
    return unix


def _rows() -> list[tuple[Any, ...]]:
    """(id, hostname, status, last_seen as stored) of every known node, straight from the cursor."""
    sql, params = Node.select(Node.id, Node.hostname, Node.status, Node.last_seen).where(known()).sql()
    return list(db.database.execute_sql(sql, params))


def _store(updates: list[tuple[str, NodeStatus, Any]]) -> None:
    """Write each node's status and last_seen (db.update_rows: one statement run for every row; a minute's
    last_seen writes come at ~170 a second at 10,000 nodes, and building one Peewee UPDATE each cost more than
    running it)."""
    db.update_rows(Node, [(node_id, {Node.status: int(new), Node.last_seen: when}) for node_id, new, when in updates])


def refresh_statuses(redis: Redis, offline_after_intervals: int) -> list[tuple[str, str, NodeStatus]]:
    """Persist status flips (and a last_seen at most a minute old); returns the (id, hostname, status) flips.

    Rewriting last_seen at every heartbeat would cost 2,000 row updates a second at 10,000 nodes; the
    database copy only has to survive a loss of Redis, so once a minute is plenty.
    """
    rows = _rows()
    if not rows:
        return []
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    summaries, online_ids = live.summaries, live.online
    online_code, offline_code = stored_status(True), stored_status(False)
    flips: list[tuple[str, str, NodeStatus]] = []
    updates: list[tuple[str, NodeStatus, Any]] = []
    for node_id, hostname, status, last_seen in rows:
        beat = summaries.get(node_id)
        code = online_code if node_id in online_ids else offline_code
        # Only a heartbeat can make last_seen stale: without one the node shows the stored value as it is.
        stale = beat is not None and (
            last_seen is None or beat.ts - _unix(node_id, last_seen) >= LAST_SEEN_PERSIST_SECONDS
        )
        if code != status or stale:
            new_status = NodeStatus(code)
            seen = from_unix(beat.ts) if beat else _as_datetime(last_seen)
            updates.append((node_id, new_status, seen))
            if code != status:
                flips.append((node_id, hostname, new_status))
    if len(_seen_unix) > 2 * len(rows) + 100:  # forgotten nodes: keep only those still known
        present = {row[0] for row in rows}
        for node_id in [node_id for node_id in _seen_unix if node_id not in present]:
            _seen_unix.pop(node_id, None)
    if not updates:
        return []
    with db.write_transaction():
        _store(updates)
        for node_id, hostname, new_status in flips:
            word = "online" if new_status == NodeStatus.ONLINE else "offline"
            audit.record("duties", f"node.{word}", node_id, {"hostname": hostname})
            # On the flip only: a node that stays offline is not raised again at every tick.
            event = alerts.NODE_ONLINE if new_status == NodeStatus.ONLINE else alerts.NODE_OFFLINE
            alerts.raise_alert(event, node_id=node_id, hostname=hostname)
    for node_id, hostname, new_status in flips:
        word = "online" if new_status == NodeStatus.ONLINE else "offline"
        logger.info("node %s (%s) %s", node_id, hostname, word)
    return flips
