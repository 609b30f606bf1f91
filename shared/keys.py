"""Every Redis key and queue name corral uses, defined once.

RQ adds its own ``rq:`` keys around the queue names below; corral's own keys all start with ``corral:``.
"""

from __future__ import annotations

import re

PREFIX = "corral:"
"""Prefix of every key that corral itself writes."""

EVENTS_GROUP = "corral-manager"
"""Consumer group of the manager on every node's reports stream (node_reports)."""

DUTIES_LOCK = PREFIX + "lock:duties"
"""Lock held by the one manager process that runs the background duties."""

LIVENESS_JUDGED = PREFIX + "liveness:judged"
"""String: Redis time at which the duties last judged node liveness (written every tick)."""

LIVENESS_GRACE = PREFIX + "liveness:grace"
"""String "paused_at resumed_at" (Redis times, expiring): nobody judged liveness between the two, so a node
online at the first counts as online until one full offline window after the second (shared.heartbeat)."""


NODE_ID = re.compile(r"\A[A-Za-z0-9-]{1,64}\Z")
"""What a node id may be (anchored: match() checks the whole id). It is spelled into the ACL key and channel
patterns of the node's Redis user (manager_api.services.nodes.redis_users), so no glob character (``* ? [ ] \\``),
and no ``_`` ``.`` ``:``: those end the node id in a job id, a worker name and a key, so that no node's
pattern can reach into a longer id's keys."""

JOB_ID_SEPARATOR = "_"
"""Between the node id and the rest of an RQ job id: a node's user reaches only the jobs named after it."""


def node_job_id(node_id: str, unique: str) -> str:
    """An RQ job id for ``node_id``'s queue (RQ allows letters, digits, ``_`` and ``-``): the node's Redis user
    reaches the job's keys (``rq:job:<id>``...) by this prefix."""
    return f"{node_id}{JOB_ID_SEPARATOR}{unique}"


def node_queue(node_id: str) -> str:
    """Name of the RQ queue that only the agent of ``node_id`` consumes."""
    return f"corral.node.{node_id}"


def node_prefix(node_id: str) -> str:
    """Start of every corral key a node's agent writes: its Redis user reaches ``node_prefix(id) + "*"``."""
    return f"{PREFIX}node:{node_id}:"


def node_heartbeat(node_id: str) -> str:
    """Hash holding the last heartbeat and psutil figures of a node."""
    return node_prefix(node_id) + "heartbeat"


def node_acked(node_id: str) -> str:
    """Set of the reports of a node the manager has committed (shared.acks); the node reads and empties it."""
    return node_prefix(node_id) + "acked"


def node_summary(node_id: str) -> str:
    """String "ts interval cpu% memory% at signature taking-jobs" of a node's last heartbeat (shared.heartbeat), so the
    node list and liveness read every node with one MGET."""
    return node_prefix(node_id) + "summary"


def node_reports(node_id: str) -> str:
    """Stream of everything a node reports (task events, fleet task reports, component reports, told apart by
    their ``kind``), consumed by the manager's duties under EVENTS_GROUP. One per node: Redis cannot let a user
    append to a shared stream without also letting it trim the stream (XADD ... MAXLEN 0)."""
    return node_prefix(node_id) + "reports"


def node_ring(node_id: str) -> str:
    """Pub/sub channel a node publishes on after appending to its reports: the duties read the rung streams
    at once (a message stores nothing, so the channel is no way to drop or alter anything)."""
    return node_prefix(node_id) + "ring"  # node_of_ring reads it back


NODE_RING_PATTERN = node_ring("*")
"""What the duties PSUBSCRIBE to: every node's ring."""


def node_of_ring(channel: str) -> str | None:
    """The node id a ring channel names, None for any other channel."""
    head, tail = f"{PREFIX}node:", ":ring"  # node_ring(node_id) == head + node_id + tail
    node_id = channel[len(head) : len(channel) - len(tail)]
    if channel.startswith(head) and channel.endswith(tail) and NODE_ID.match(node_id):
        return node_id
    return None


def instance_log(node_id: str, instance_id: str) -> str:
    """Stream of an app instance's stdout and stderr lines on its node (newest APP_LOG_STREAM_MAXLEN kept), read
    by GET /api/apps/{name}/instances/{id}/logs."""
    return f"{node_prefix(node_id)}log:{instance_id}"


def task_output(task_id: str, node_id: str) -> str:
    """Stream of a fleet task's output lines from one node, read from the start by late followers (who read
    every node of the task together)."""
    return f"{node_prefix(node_id)}output:{task_id}"


def task_changed_channel(task_id: str) -> str:
    """Pub/sub channel told each time the duties change a fleet task, so ?wait callers wake at once."""
    return f"{PREFIX}task:{task_id}:changed"


def workflow_changed_channel(workflow_id: str) -> str:
    """Pub/sub channel told each time the workflow engine moves a workflow (a step started or ended, the workflow
    ended or was canceled), so its ?wait callers and event streams wake at once."""
    return f"{PREFIX}workflow:{workflow_id}:changed"


def console_session(digest: str) -> str:
    """Hash of one web console session (actor, csrf, created), by the SHA-256 of its cookie: whoever reads
    Redis learns no cookie that would sign them in. Expires when the session does."""
    return f"{PREFIX}console:session:{digest}"


SCRIPT_CONTENT_PREFIX = PREFIX + "script:"
"""Start of the keys holding scripts' contents; every node's Redis user may read (only read) them."""


def script_content(digest: str) -> str:
    """String: a registered script's content (its body, or its zip) by its sha256 hex digest, written by the
    manager at registration and again at dispatch when missing; agents GET it on a cache miss and check the
    digest before using it. A script's secrets never live in its content, so any node may read any script."""
    return f"{SCRIPT_CONTENT_PREFIX}{digest}"
