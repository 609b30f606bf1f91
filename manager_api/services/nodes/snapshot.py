"""The one read of node liveness: Redis's time, each node's verified heartbeat summary and whether it is online.

Every reader of "is this node online" (the node lists, placement, fleet task targets, business upkeep, the
duties' judging, a forget) reads through ``read``, so they all judge a node by the one rule
(heartbeat.Summary.online_until) with the same grace, at the same Redis time, from one MGET.
"""

from __future__ import annotations

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

    def summary(self, node_id: str) -> heartbeat.Summary | None:
        """The verified summary of ``node_id``, or None."""
        return self.summaries.get(node_id)

    def is_online(self, node_id: str) -> bool:
        """Whether ``node_id``'s last heartbeat keeps it online."""
        return node_id in self.online

    def is_ready(self, node_id: str) -> bool:
        """Online and its worker takes jobs (not waiting to reconnect to Redis): what a business placement needs."""
        return node_id in self.online and self.summaries[node_id].taking_jobs


# A summary changes once per interval but is read by every node query: each process keeps the last one it
# verified per node (with the master key it was verified under) and its parse, so a read of 1,000 unchanged
# nodes costs a dict lookup each rather than a key derivation and a signature check. One entry per node id
# ever read, as heartbeat.parse_summary's own cache.
_verified: dict[str, tuple[bytes, bytes, heartbeat.Summary | None]] = {}


def _summary(node_id: str, raw: bytes, master: bytes) -> heartbeat.Summary | None:
    cached = _verified.get(node_id)
    if cached is not None and cached[0] == raw and cached[1] == master:
        return cached[2]
    summary = heartbeat.parse_summary(raw, node_id, job_keys.node_key)
    _verified[node_id] = (raw, master, summary)
    return summary


def read(redis: Redis, node_ids: Iterable[str], offline_after_intervals: int) -> Snapshot:
    """The liveness of ``node_ids`` (those the caller's database query found), in one Redis round trip."""
    now, raw, grace = heartbeat.read_raw_summaries(redis, node_ids)
    master = job_keys.master_key()
    summaries: dict[str, heartbeat.Summary] = {}
    online = []
    for node_id, value in raw.items():
        summary = _summary(node_id, value, master)
        if summary is None:
            continue
        if grace is not None:
            summary = summary._replace(grace=grace)
        summaries[node_id] = summary
        if summary.online(now, offline_after_intervals):
            online.append(node_id)
    return Snapshot(now, grace, raw, summaries, frozenset(online))
