"""The one read of node liveness: Redis's time, each node's verified heartbeat summary and whether it is online.

Every reader of "is this node online" (the node lists, placement, fleet task targets, business upkeep, the
duties' judging, a forget) reads through ``read``, so they all judge a node by the one rule
(heartbeat.Summary.online_until) with the same grace, at the same Redis time, from one MGET.
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, count, repeat
from typing import NamedTuple

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
    ids: tuple[str, ...]
    """The node ids asked about, in the order asked: what the lists below are by position."""
    values: list[bytes | None]
    """Each one's summary as stored (None: none stored)."""
    by_position: list[heartbeat.Summary | None]
    """Each one's summary, signed by its node (None: never heard from, or forged)."""
    up: list[bool]
    """Whether each one is online by the one rule."""
    online: frozenset[str]
    """The ids of the nodes online by the one rule."""
    ready: frozenset[str]
    """The ids of the online nodes whose worker takes jobs (not waiting to reconnect to Redis)."""
    _raw: dict[str, bytes] | None = field(default=None, repr=False, compare=False)
    _summaries: dict[str, heartbeat.Summary] | None = field(default=None, repr=False, compare=False)

    # The node list reads its nodes by position (rows in the order of ``ids``): the two mappings of 10,000 nodes
    # are built only for the readers that ask for them (a race builds the same mapping twice, harmlessly).
    @property
    def raw(self) -> Mapping[str, bytes]:
        """node id -> its summary as stored, for readers that cache what they render from it."""
        raw = self._raw
        if raw is None:
            raw = heartbeat.stored_by_node(self.ids, self.values)
            object.__setattr__(self, "_raw", raw)
        return raw

    @property
    def summaries(self) -> Mapping[str, heartbeat.Summary]:
        """node id -> its summary, signed by its node (a node never heard from, or forged, is absent)."""
        summaries = self._summaries
        if summaries is None:
            summaries = dict(zip(compress(self.ids, self.by_position), filter(None, self.by_position), strict=True))
            object.__setattr__(self, "_summaries", summaries)
        return summaries

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
    judged = _judged.get(node_id)
    if judged is not None and judged[1] is under and judged[0] == raw:
        return judged
    summary = heartbeat.parse_summary(raw, node_id, job_keys.node_key)
    until = -math.inf
    if summary is not None:
        if grace is not None:
            summary = summary._replace(grace=grace)
        until = summary.online_until(offline_after_intervals)
    judged = _judged[node_id] = (raw, under, summary, until)
    return judged


class _Judged(NamedTuple):
    """One list of nodes as last read, by position: what each one's summary was and what it was judged to."""

    under: _Under
    values: list[bytes | None]
    summaries: list[heartbeat.Summary | None]
    untils: list[float]
    """Summary.online_until of each (-inf without a summary): online is ``now <= until``."""
    taking: list[bool]
    """Whether each one's worker takes jobs (False without a summary)."""


# The node list and the duties read the same 10,000 ids at every call, of which a fifth a second heartbeat
# again: a Python loop over every node (a dict lookup and three comparisons each) was a fifth of the list's
# CPU. Each process keeps, for the few id lists it read last (by their tuple), each node's summary and judgment
# by position; the next read of the same list finds the changed values with one comparison of two lists in C,
# judges those alone, and builds the online and ready sets from the kept times without a Python loop.
_by_ids: dict[tuple[str, ...], _Judged] = {}
_by_ids_lock = threading.Lock()
ID_LISTS_KEPT = 4
"""Id lists whose judgments a process keeps (the node list's, the duties', placement's...)."""
SHORTEST_LIST_KEPT = 64
"""Shorter lists (one node's page, a business's few nodes) are judged through _judged alone: cheap, and kept
they would push the long lists out."""


def _judged_list(
    ids: tuple[str, ...],
    values: list[bytes | None],
    under: _Under,
    grace: heartbeat.Grace | None,
    offline_after_intervals: int,
) -> _Judged:
    """The judgment of every node of ``ids`` whose summaries read ``values``, from the last of the same ids."""
    with _by_ids_lock:
        kept = _by_ids.get(ids) if len(ids) >= SHORTEST_LIST_KEPT else None
    if kept is not None and kept.under is under:
        summaries, untils, taking = list(kept.summaries), list(kept.untils), list(kept.taking)
        changed = compress(count(), map(operator.ne, values, kept.values))
    else:
        summaries, untils, taking = [None] * len(ids), [-math.inf] * len(ids), [False] * len(ids)
        changed = compress(count(), map(operator.is_not, values, repeat(None)))
    for i in changed:
        value = values[i]
        summary, until = None, -math.inf
        if value is not None:
            _raw, _under, summary, until = _judge(ids[i], value, under, grace, offline_after_intervals)
        summaries[i], untils[i], taking[i] = summary, until, summary is not None and summary.taking_jobs
    judged = _Judged(under, values, summaries, untils, taking)
    if len(ids) < SHORTEST_LIST_KEPT:
        return judged
    with _by_ids_lock:
        _by_ids.pop(ids, None)
        _by_ids[ids] = judged  # the most recent last
        while len(_by_ids) > ID_LISTS_KEPT:
            del _by_ids[next(iter(_by_ids))]
    return judged


def read(redis: Redis, node_ids: Iterable[str], offline_after_intervals: int) -> Snapshot:
    """The liveness of ``node_ids`` (those the caller's database query found), in one Redis round trip."""
    global _judged_under
    ids = tuple(node_ids)
    now, values, grace = heartbeat.read_raw_values(redis, ids)
    now = float(now)  # a float's own comparison below: int.__le__(float) is NotImplemented, which is true
    under = (job_keys.master_key(), grace, offline_after_intervals)
    if under == _judged_under:
        under = _judged_under  # the very tuple the entries judged under these terms hold
    else:
        _judged_under = under
    judged = _judged_list(ids, values, under, grace, offline_after_intervals)
    up = list(map(now.__le__, judged.untils))  # Summary.online: the rule's time, kept with the summary
    online = frozenset(compress(ids, up))
    ready = frozenset(compress(ids, map(operator.and_, up, judged.taking)))
    return Snapshot(now, grace, ids, values, judged.summaries, up, online, ready)
