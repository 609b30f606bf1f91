"""Every Redis key and queue name corral uses, defined once.

RQ adds its own ``rq:`` keys around the queue names below; corral's own keys all start with ``corral:``.
"""

from __future__ import annotations

PREFIX = "corral:"
"""Prefix of every key that corral itself writes."""

NODES_SEEN = PREFIX + "nodes:seen"
"""Sorted set: node id -> Redis time (seconds) of its last heartbeat."""

NODES_SUMMARY = PREFIX + "nodes:summary"
"""Hash: node id -> "ts interval cpu% memory%" of its last heartbeat, so the node list is one HGETALL."""

EVENTS_STREAM = PREFIX + "events"
"""Stream of task events that agents append and the manager's duties consume."""

COMMAND_REPORTS_STREAM = PREFIX + "command-reports"
"""Stream of fleet task reports (a node started, finished, timed out...) that the manager's duties consume."""

COMPONENT_REPORTS_STREAM = PREFIX + "component-reports"
"""Stream of business component reports (state changes, and resource usage every interval) for the duties."""

EVENTS_GROUP = "corral-manager"
"""Consumer group of the manager on EVENTS_STREAM."""

DUTIES_LOCK = PREFIX + "lock:duties"
"""Lock held by the one manager process that runs the background duties."""

LIVENESS_JUDGED = PREFIX + "liveness:judged"
"""String: Redis time at which the duties last judged node liveness (written every tick)."""

LIVENESS_GRACE = PREFIX + "liveness:grace"
"""String "paused_at resumed_at" (Redis times, expiring): nobody judged liveness between the two, so a node
online at the first counts as online until one full offline window after the second (shared.heartbeat)."""


def node_queue(node_id: str) -> str:
    """Name of the RQ queue that only the agent of ``node_id`` consumes."""
    return f"corral.node.{node_id}"


def node_heartbeat(node_id: str) -> str:
    """Hash holding the last heartbeat and psutil figures of a node."""
    return f"{PREFIX}node:{node_id}:heartbeat"


def node_acked(node_id: str) -> str:
    """Set of the reports of a node the manager has committed (shared.acks); the node reads and empties it."""
    return f"{PREFIX}node:{node_id}:acked"


def task_output(task_id: str) -> str:
    """Stream of a fleet task's output lines from every node, read from the start by late followers."""
    return f"{PREFIX}task:{task_id}:output"


def task_changed_channel(task_id: str) -> str:
    """Pub/sub channel told each time the duties change a fleet task, so ?wait callers wake at once."""
    return f"{PREFIX}task:{task_id}:changed"
