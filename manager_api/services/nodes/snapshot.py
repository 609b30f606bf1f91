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
# last summary it verified, its parse and the time it keeps the node online until, so a read of 1,000
# unchanged nodes costs a dict lookup each rather than a key derivation, a signature check and the rule. One
# entry per node id ever read, as heartbeat.parse_summary's own cache. Each entry holds what it was judged
# under (master key, grace, setting) as the one tuple _judged_under held then, so that the check per node is
# one identity test: a read under other terms makes a new tuple, and every entry is judged again under it.
_Under = tuple[bytes, heartbeat.Grace | None, int]
_judged: dict[str, tuple[bytes, _Under, heartbeat.Summary | None, float]] = {}
_judged_under: _Under | None = None


def _judge(
    node_id: str, raw: bytes, under: _Under, grace: heartbeat.Grace | None, offline_after_intervals: int
) -> tuple[bytes, _Under, heartbeat.Summary | None, float]:
    summary = heartbeat.parse_summary(raw, node_id, job_keys.node_key)
    until = -math.inf
    if summary is not None:
        if grace is not None:
            summary = summary._replace(grace=grace)
        until = summary.online_until(offline_after_intervals)
    judged = _judged[node_id] = (raw, under, summary, until)
    return judged


def read(redis: Redis, node_ids: Iterable[str], offline_after_intervals: int) -> Snapshot:
    """The liveness of ``node_ids`` (those the caller's database query found), in one Redis round trip."""
    global _judged_under
    now, raw, grace = heartbeat.read_raw_summaries(redis, node_ids)
    under = (job_keys.master_key(), grace, offline_after_intervals)
    if under == _judged_under:
        under = _judged_under  # the very tuple the entries judged under these terms hold
    else:
        _judged_under = under
    summaries: dict[str, heartbeat.Summary] = {}
    online = []
    ready = []
    judged_of = _judged.get
    for node_id, value in raw.items():
        judged = judged_of(node_id)
        if judged is None or judged[1] is not under or judged[0] != value:
            judged = _judge(node_id, value, under, grace, offline_after_intervals)
        summary = judged[2]
        if summary is None:
            continue
        summaries[node_id] = summary
        if now <= judged[3]:  # Summary.online: the rule's time, kept with the summary
            online.append(node_id)
            if summary.taking_jobs:
                ready.append(node_id)
    return Snapshot(now, grace, raw, summaries, frozenset(online), frozenset(ready))
