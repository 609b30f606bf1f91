"""The one read of node liveness: Redis's time, each node's verified heartbeat summary and whether it is online.

Every reader of "is this node online" (the node lists, placement, fleet task targets, business upkeep, the
duties' judging, a forget) reads through ``read``, so they all judge a node by the one rule
(heartbeat.Summary.online_until) with the same grace, at the same Redis time, from one MGET.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redis import Redis

from manager_api.services import job_keys
from shared import heartbeat


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Who of the nodes asked about is online, as of one Redis time."""

    now: float
    """Redis's time when it was read: what the liveness rule compares heartbeats with."""
    grace: heartbeat.Grace | None
    """The liveness grace in force (heartbeat.grace_in_force), already applied to every summary."""
    raw: Mapping[str, bytes]
    """node id -> its summary as stored, for readers that cache what they render from it."""
    summaries: Mapping[str, heartbeat.Summary]
    """node id -> its summary, signed by its node (a node never heard from, or forged, is absent)."""
    online: frozenset[str]
    """The ids of the nodes online by the one rule."""
    ready: frozenset[str]
    """The ids of the online nodes whose worker takes jobs (not waiting to reconnect to Redis)."""

    def summary(self, node_id: str) -> heartbeat.Summary | None:
        """The verified summary of ``node_id``, or None."""
        return self.summaries.get(node_id)

    def is_online(self, node_id: str) -> bool:
        """Whether ``node_id``'s last heartbeat keeps it online."""
        return node_id in self.online

    def is_ready(self, node_id: str) -> bool:
        """Online and its worker takes jobs (not waiting to reconnect to Redis): what a business placement needs."""
        return node_id in self.ready


# A summary changes once per interval but is read by every node query: each process keeps, per node, the
# last summary it verified (with the master key, grace and setting it was judged under), its parse and the
# time it keeps the node online until, so a read of 1,000 unchanged nodes costs a dict lookup each rather
# than a key derivation, a signature check and the rule. One entry per node id ever read, as
# heartbeat.parse_summary's own cache.
_judged: dict[str, tuple[bytes, bytes, heartbeat.Grace | None, int, heartbeat.Summary | None, float]] = {}


def _judge(
    node_id: str, raw: bytes, master: bytes, grace: heartbeat.Grace | None, offline_after_intervals: int
) -> tuple[bytes, bytes, heartbeat.Grace | None, int, heartbeat.Summary | None, float]:
    summary = heartbeat.parse_summary(raw, node_id, job_keys.node_key)
    until = -math.inf
    if summary is not None:
        if grace is not None:
            summary = summary._replace(grace=grace)
        until = summary.online_until(offline_after_intervals)
    judged = _judged[node_id] = (raw, master, grace, offline_after_intervals, summary, until)
    return judged


def read(redis: Redis, node_ids: Iterable[str], offline_after_intervals: int) -> Snapshot:
    """The liveness of ``node_ids`` (those the caller's database query found), in one Redis round trip."""
    now, raw, grace = heartbeat.read_raw_summaries(redis, node_ids)
    master = job_keys.master_key()
    summaries: dict[str, heartbeat.Summary] = {}
    online = []
    ready = []
    for node_id, value in raw.items():
        judged = _judged.get(node_id)
        if (
            judged is None
            or judged[0] != value
            or judged[1] != master
            or judged[2] != grace
            or judged[3] != offline_after_intervals
        ):
            judged = _judge(node_id, value, master, grace, offline_after_intervals)
        summary = judged[4]
        if summary is None:
            continue
        summaries[node_id] = summary
        if now <= judged[5]:  # Summary.online: the rule's time, kept with the summary
            online.append(node_id)
            if summary.taking_jobs:
                ready.append(node_id)
    return Snapshot(now, grace, raw, summaries, frozenset(online), frozenset(ready))
