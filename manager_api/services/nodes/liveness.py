"""The duties' judging of node liveness: the one writer of Node.status (online/offline) and Node.last_seen.

The rule itself is heartbeat.Summary.online_until and the read is snapshot.read; this module persists what
they say, so that readers of the stored status (the fleet task and business upkeep that run right after it in
the same tick) agree with the live readers.
"""

from __future__ import annotations

import logging
from datetime import datetime
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


def refresh_statuses(redis: Redis, offline_after_intervals: int) -> list[tuple[str, str, NodeStatus]]:
    """Persist status flips (and a last_seen at most a minute old); returns the (id, hostname, status) flips.

    Rewriting last_seen at every heartbeat would cost 2,000 row updates a second at 10,000 nodes; the
    database copy only has to survive a loss of Redis, so once a minute is plenty.
    """
    rows = list(Node.select(Node.id, Node.hostname, Node.status, Node.last_seen).where(known()).tuples())
    if not rows:
        return []
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    flips: list[tuple[str, str, NodeStatus]] = []
    updates: list[tuple[str, NodeStatus, Any]] = []
    for node_id, hostname, status, last_seen in rows:
        beat = live.summary(node_id)
        new_status = NodeStatus.ONLINE if live.is_online(node_id) else NodeStatus.OFFLINE
        seen = from_unix(beat.ts) if beat else last_seen
        stale = seen is not None and (
            last_seen is None or (seen - _as_datetime(last_seen)).total_seconds() >= LAST_SEEN_PERSIST_SECONDS
        )
        if new_status != status or stale:
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
            # On the flip only: a node that stays offline is not raised again at every tick.
            event = alerts.NODE_ONLINE if new_status == NodeStatus.ONLINE else alerts.NODE_OFFLINE
            alerts.raise_alert(event, node_id=node_id, hostname=hostname)
    for node_id, hostname, new_status in flips:
        word = "online" if new_status == NodeStatus.ONLINE else "offline"
        logger.info("node %s (%s) %s", node_id, hostname, word)
    return flips
