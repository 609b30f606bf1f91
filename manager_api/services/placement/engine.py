"""The business scheduler (document 001 §7): which node each component goes to, and why not the others.

``plan`` is pure (no DB, no Redis) so it can be unit-tested and benchmarked; ``load_nodes`` builds its
input from the database (facts, labels, reservations) and nodes.snapshot (who is online, live CPU).

Filters, in order, each naming the first reason a node is refused: online, every affinity label matches
(effective labels: the agent's, overridden by the API's), require_gpu → the node has GPUs, gpu → one
of its GPUs is free, free CPU >= cpu_cores, free memory >= memory_mb. Among the nodes left, the one whose
busiest resource (CPU or memory, and GPUs for a GPU component) is least used after placing wins; ties go
to the lower live CPU % of the last heartbeat, then to the node id. A component that asks for a node it
already runs on (``prefer_node``: restart, update) stays there when that node still passes the filters.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from peewee import fn
from redis import Redis

from manager_api.db import database
from manager_api.models import BusinessComponent, Node
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from shared import heartbeat
from shared.states import ComponentState

logger = logging.getLogger(__name__)

REMOVED = "removed"
"""BusinessComponent.desired of a component an update dropped: its reservation is already given back."""

ACTIVE_COMPONENT_STATES = tuple(s.value for s in ComponentState if s.active)
"""Component states that hold their reservation on their node."""

NO_NODES = "no node has joined"
"""The only reason given when there is no node at all."""


class NodeCapacity(NamedTuple):
    """One node as the scheduler sees it: totals from its facts, minus what corral already placed there.

    A NamedTuple rather than a frozen dataclass: one is built per node whenever its heartbeat changed,
    and at 1,000 nodes the dataclass's per-field setattr was a third of a placement's time.
    """

    node_id: str
    hostname: str
    online: bool
    labels: Mapping[str, str]
    cpu_cores: float  # total (facts cpu_count, or the agent's --cpu-cores)
    memory_mb: int  # total (facts memory_total_mb, or --memory-mb)
    gpus: int  # total (facts gpu_count, or --gpus)
    cpu_reserved: float = 0.0  # by active components already placed here
    memory_reserved: int = 0
    gpus_reserved: int = 0
    cpu_usage_percent: float = 0.0  # live, from the last heartbeat: only a tie-breaker


@dataclass(frozen=True)
class Demand:
    """What one component asks for (resource_requirements + affinity)."""

    component_id: str
    cpu_cores: float = 0.0
    memory_mb: int = 0
    gpu: bool = False  # needs one whole free GPU
    require_gpu: bool = False  # affinity: only nodes that have GPUs
    node_labels: Mapping[str, str] = field(default_factory=dict)  # affinity: all must match
    prefer_node: str | None = None  # keep it where it is (restart, update) when that node still fits


@dataclass(frozen=True)
class Placement:
    component_id: str
    node_id: str
    hostname: str
    score: float  # utilisation of the chosen node after placing (lower = emptier)


REJECTION_KINDS = ("memory", "cpu", "gpu", "labels", "offline")
"""What a node can refuse a component for, the most telling first: a node that fails on a resource has
passed every other filter and is the nearest to fitting, an offline one tells the least."""

MAX_NODE_REASONS = 20
"""Node reasons listed per refused component; the rest are only counted (like Nomad's placement failure
summary), so a refusal over thousands of nodes stays readable and bounded."""


@dataclass
class Plan:
    placements: list[Placement] = field(default_factory=list)
    rejections: dict[str, list[str]] = field(default_factory=dict)
    """component_id -> at most MAX_NODE_REASONS node reasons, most telling first, e.g.
    "node-2: memory 512 MB free < 1024 MB", then "… and N more nodes" when there were more."""
    rejection_summary: dict[str, dict[str, int]] = field(default_factory=dict)
    """component_id -> {kind: how many nodes refused it for that} over every node, every kind present."""

    @property
    def ok(self) -> bool:
        return not self.rejections

    def refusal_text(self) -> str:
        """One clause per refused component, e.g. "no node fits component web: memory on 950 nodes,
        offline on 50"; never one per node."""
        parts = []
        for component_id, counts in self.rejection_summary.items():
            found = sorted(((n, kind) for kind, n in counts.items() if n), key=lambda item: -item[0])
            if not found:
                parts.append(f"no node fits component {component_id}: {NO_NODES}")
                continue
            first_n, first_kind = found[0]
            words = [f"{first_kind} on {first_n} node{'' if first_n == 1 else 's'}"]
            words += [f"{kind} on {n}" for n, kind in found[1:]]
            parts.append(f"no node fits component {component_id}: {', '.join(words)}")
        return "; ".join(parts)


def _num(value: float) -> str:
    """A figure for a reason: ``2`` rather than ``2.0``, ``1.5`` as is."""
    return f"{value:g}"


class _Room:
    """What is left on one node while a plan is built: reservations plus this plan's own placements."""

    __slots__ = ("node", "cpu_used", "memory_used", "gpus_used")

    def __init__(self, node: NodeCapacity) -> None:
        self.node = node
        self.cpu_used = node.cpu_reserved
        self.memory_used = node.memory_reserved
        self.gpus_used = node.gpus_reserved

    def refusal(self, demand: Demand) -> str | None:
        """Why ``demand`` cannot go here (the first filter that fails), or None when it fits."""
        refused = self.refused_for(demand)
        return None if refused is None else self.reason(demand, refused[0])

    def refused_for(self, demand: Demand) -> tuple[str, float] | None:
        """(kind, shortfall) of the first filter that fails, or None when ``demand`` fits.

        Cheap (no text): it runs for every node when a component fits nowhere. The shortfall orders nodes
        of one kind, the nearest to fitting first.
        """
        node = self.node
        if not node.online:
            return "offline", 0.0
        if not _labels_match(node, demand.node_labels):
            return "labels", 0.0
        if demand.require_gpu and node.gpus <= 0:
            return "gpu", 1.0  # after the nodes whose GPUs are only all taken
        if demand.gpu and node.gpus - self.gpus_used < 1:
            return "gpu", 0.0
        cpu_free = node.cpu_cores - self.cpu_used
        if cpu_free + CPU_SLACK < demand.cpu_cores:
            return "cpu", demand.cpu_cores - cpu_free
        memory_free = node.memory_mb - self.memory_used
        if memory_free < demand.memory_mb:
            return "memory", float(demand.memory_mb - memory_free)
        return None

    def reason(self, demand: Demand, kind: str) -> str:
        """The words for a refusal of ``kind`` (as refused_for found it)."""
        node = self.node
        if kind == "offline":
            return "offline"
        if kind == "labels":
            for key, wanted in demand.node_labels.items():
                have = node.labels.get(key)
                if have != wanted:
                    return f"label {key}={wanted} missing" + ("" if have is None else f" (has {key}={have})")
        if kind == "gpu":
            if demand.require_gpu and node.gpus <= 0:
                return "no GPU"
            return f"no free GPU ({self.gpus_used} of {node.gpus} reserved)"
        if kind == "cpu":
            cpu_free = node.cpu_cores - self.cpu_used
            return f"cpu {_num(round(max(cpu_free, 0.0), 3))} cores free < {_num(demand.cpu_cores)} cores"
        memory_free = node.memory_mb - self.memory_used
        return f"memory {max(memory_free, 0)} MB free < {demand.memory_mb} MB"

    def score(self, demand: Demand) -> float:
        """The busiest resource's share of the node once ``demand`` is placed (0 empty, 1 full)."""
        node = self.node
        cpu = (self.cpu_used + demand.cpu_cores) / node.cpu_cores if node.cpu_cores > 0 else 0.0
        memory = (self.memory_used + demand.memory_mb) / node.memory_mb if node.memory_mb > 0 else 0.0
        share = cpu if cpu > memory else memory
        if demand.gpu and node.gpus > 0:
            share = max(share, (self.gpus_used + 1) / node.gpus)
        return share

    def take(self, demand: Demand) -> None:
        self.cpu_used += demand.cpu_cores
        self.memory_used += demand.memory_mb
        self.gpus_used += 1 if demand.gpu else 0


CPU_SLACK = 1e-9
"""So that 0.1 + 0.2 cores fit in 0.3 free despite floating point."""


def _labels_match(node: NodeCapacity, wanted: Mapping[str, str]) -> bool:
    labels = node.labels
    for key, value in wanted.items():
        if labels.get(key) != value:
            return False
    return True


def _best(rooms: Sequence[_Room], demand: Demand) -> _Room | None:
    """The room that fits ``demand`` and stays emptiest, or None.

    The hot loop of the scheduler (nodes x components): the cheap filters first, and no reason text,
    which is only worth building when nothing fits.
    """
    cpu, memory, gpu = demand.cpu_cores - CPU_SLACK, demand.memory_mb, demand.gpu
    candidates: Sequence[_Room] = rooms
    if demand.node_labels:
        candidates = [r for r in candidates if _labels_match(r.node, demand.node_labels)]
    if demand.require_gpu or gpu:
        candidates = [r for r in candidates if r.node.gpus > 0 and (not gpu or r.node.gpus - r.gpus_used >= 1)]
    best: _Room | None = None
    best_score = 0.0
    wanted_cpu = demand.cpu_cores
    for room in candidates:
        node = room.node
        cpu_total, memory_total = node.cpu_cores, node.memory_mb
        cpu_after = room.cpu_used + wanted_cpu
        memory_after = room.memory_used + memory
        if cpu_total - room.cpu_used < cpu or memory_total < memory_after:
            continue
        if gpu:
            score = room.score(demand)
        else:  # room.score() inlined: this line runs nodes x components times
            cpu_share = cpu_after / cpu_total if cpu_total > 0 else 0.0
            memory_share = memory_after / memory_total if memory_total > 0 else 0.0
            score = cpu_share if cpu_share > memory_share else memory_share
        if (
            best is None
            or score < best_score
            or (
                score == best_score
                and (node.cpu_usage_percent, node.node_id) < (best.node.cpu_usage_percent, best.node.node_id)
            )
        ):
            best, best_score = room, score
    return best


def plan(nodes: Sequence[NodeCapacity], demands: Sequence[Demand]) -> Plan:
    """Place every demand in order, counting earlier placements of the same plan; rejections say why.

    A demand that fits nowhere gets its refusal (the most telling node reasons and a count per kind over
    every node) and takes nothing, and the later demands are still planned, so one answer lists every
    component that cannot be placed.
    """
    rooms = [_Room(n) for n in nodes]
    online = [room for room in rooms if room.node.online]
    by_id = {room.node.node_id: room for room in rooms}
    result = Plan()
    for demand in demands:
        preferred = by_id.get(demand.prefer_node) if demand.prefer_node else None
        if preferred is not None and preferred.refusal(demand) is None:
            chosen: _Room | None = preferred
        else:
            chosen = _best(online, demand)
        if chosen is None:
            _reject(result, rooms, demand)
            continue
        score = chosen.score(demand)
        chosen.take(demand)
        result.placements.append(
            Placement(demand.component_id, chosen.node.node_id, chosen.node.hostname, round(score, 4))
        )
    return result


def _reject(result: Plan, rooms: Sequence[_Room], demand: Demand) -> None:
    """Record why no room takes ``demand``: every node counted, the MAX_NODE_REASONS most telling named."""
    rank = {kind: i for i, kind in enumerate(REJECTION_KINDS)}
    counts = dict.fromkeys(REJECTION_KINDS, 0)
    refused: list[tuple[int, float, int, str]] = []
    for position, room in enumerate(rooms):
        found = room.refused_for(demand)
        if found is None:  # cannot happen (_best would have taken it); never name a node that fits
            continue
        kind, shortfall = found
        counts[kind] += 1
        refused.append((rank[kind], shortfall, position, kind))
    refused.sort()
    reasons = []
    for _, _, position, kind in refused[:MAX_NODE_REASONS]:
        room = rooms[position]
        reasons.append(f"{room.node.hostname or room.node.node_id}: {room.reason(demand, kind)}")
    if len(refused) > MAX_NODE_REASONS:
        reasons.append(f"… and {len(refused) - MAX_NODE_REASONS} more nodes")
    result.rejections[demand.component_id] = reasons or [NO_NODES]
    result.rejection_summary[demand.component_id] = counts


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def capacity_from_facts(facts: Mapping[str, Any]) -> tuple[float, int, int]:
    """(cpu cores, memory MB, GPUs) a node offers, from the facts its agent sent at the join.

    The agent puts its --cpu-cores/--memory-mb/--gpus overrides in these same keys; a fact that is
    missing or unreadable counts as 0, so such a node only takes components that ask for nothing of it.
    """
    gpus = facts.get("gpu_count")
    if gpus is None and isinstance(facts.get("gpus"), list):
        gpus = len(facts["gpus"])
    return _float(facts.get("cpu_count")), _int(facts.get("memory_total_mb")), _int(gpus)


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def reservations(exclude_business_id: str | None = None) -> dict[str, tuple[float, int, int]]:
    """node id -> (cpu cores, memory MB, GPUs) held by active components, leaving out one business's."""
    query = BusinessComponent.select(
        BusinessComponent.node,
        fn.SUM(BusinessComponent.cpu_cores),
        fn.SUM(BusinessComponent.memory_mb),
        fn.SUM(BusinessComponent.gpus),
    ).where(
        BusinessComponent.node.is_null(False),
        # `status || ''`: not the status index (SQLite takes it without ANALYZE figures, then looks every row
        # up and sorts them by node) but the covering (node, status, desired, cpu, memory, gpus) index,
        # read alone and already in node order; 5 ms -> 2.5 ms at 3,000 components.
        BusinessComponent.status.concat("").in_(ACTIVE_COMPONENT_STATES),
        # A component an update removed holds its node until the node confirms the stop (the row goes then).
    )
    if exclude_business_id is not None:
        query = query.where(BusinessComponent.business != exclude_business_id)
    # Raw cursor rows: peewee's row conversion costs more than the query at thousands of components.
    rows = database.execute(query.group_by(BusinessComponent.node)).fetchall()
    return {node_id: (float(cpu or 0.0), int(memory or 0), int(gpus or 0)) for node_id, cpu, memory, gpus in rows}


# Placement may run many times a second over thousands of nodes whose facts change only at a join and
# whose reservations and heartbeats change far less often than that: each process keeps the last
# NodeCapacity it built per node with everything it was built from (hostname, facts text, labels text,
# reservation, raw heartbeat summary), and reuses it while that is unchanged. Those inputs are read afresh
# by every placement and compared, never trusted from an earlier one, so a change made by another worker
# process (a label PUT, a rejoin with new facts, a reservation) is seen by the next placement in this one.
_built: dict[str, tuple[tuple[Any, ...], NodeCapacity]] = {}

NOTHING_HELD = (0.0, 0, 0)


# Nodes heartbeat every few seconds, so a placement a few seconds after the last one finds nearly every
# heartbeat new: what only a join or a label change alters (parsed labels and capacity) is then taken from
# the node's last NodeCapacity when its texts are unchanged, and else parsed once per distinct text.
TEXT_CACHE_SIZE = 16384


@functools.lru_cache(maxsize=TEXT_CACHE_SIZE)
def _labels(text: str | None) -> Mapping[str, str]:
    """Parsed labels, shared read-only: most nodes of a fleet carry one of a few label sets, so even the
    first placement after a start parses each set once rather than once per node."""
    return MappingProxyType({str(k): str(v) for k, v in _json_object(text).items()})


@functools.lru_cache(maxsize=TEXT_CACHE_SIZE)
def _capacity(facts_text: str | None) -> tuple[float, int, int]:
    return capacity_from_facts(_json_object(facts_text))


def forget() -> None:
    """Drop what this process remembers of the nodes, as a restarted manager has nothing (for the bench)."""
    _built.clear()
    _labels.cache_clear()
    _capacity.cache_clear()


def load_nodes(
    redis: Redis, offline_after_intervals: int, exclude_business_id: str | None = None
) -> list[NodeCapacity]:
    """Every known node with its capacity, reservations (of active components not being replaced: those
    of ``exclude_business_id`` are left out) and online status.

    When a business is excluded, its caller re-plans every component of it that should keep running
    (with ``prefer_node`` set to where each runs), so what it keeps is counted again by the plan itself.
    """
    query = Node.select(Node.id, Node.hostname, Node.facts, Node.labels).where(known()).order_by(Node.id)
    rows = database.execute(query).fetchall()
    held = reservations(exclude_business_id)
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    built = _built
    out = []
    for node_id, hostname, facts_text, labels_text in rows:
        inputs = (hostname, facts_text, labels_text, held.get(node_id, NOTHING_HELD), live.raw.get(node_id))
        ready = live.is_ready(node_id)
        cached = built.get(node_id)
        if cached is not None and cached[0] == inputs:
            node = cached[1]
            if ready != node.online:  # the same heartbeat, grown old (or the setting or the grace changed)
                node = node._replace(online=ready)
                built[node_id] = (inputs, node)
        else:
            node = _build(node_id, inputs, ready, live.summary(node_id), cached)
            built[node_id] = (inputs, node)
        out.append(node)
    if len(built) > len(out):  # nodes were deleted: do not keep them for the life of the process
        present = {node.node_id for node in out}
        # list() and pop(): other threads of this worker may place at the same time. An entry one of
        # them dropped or wrote from older rows only costs a rebuild: every entry is checked before use.
        for node_id in list(built):
            if node_id not in present:
                built.pop(node_id, None)
    return out


def _build(
    node_id: str,
    inputs: tuple[Any, ...],
    ready: bool,
    beat: heartbeat.Summary | None,
    cached: tuple[tuple[Any, ...], NodeCapacity] | None,
) -> NodeCapacity:
    """The NodeCapacity of ``node_id`` from its inputs (hostname, facts text, labels text, reservation, raw
    summary), reusing the parsed facts and labels of its last one when those texts are unchanged."""
    hostname, facts_text, labels_text, (cpu_held, memory_held, gpus_held), _raw = inputs
    if cached is not None and cached[0][1] == facts_text and cached[0][2] == labels_text:
        # Only the heartbeat, the reservation or the hostname changed (the usual case): the parsed facts
        # and labels of the last NodeCapacity still hold.
        last = cached[1]
        labels, cpu, memory, gpus = last.labels, last.cpu_cores, last.memory_mb, last.gpus
    else:
        labels = _labels(labels_text)
        cpu, memory, gpus = _capacity(facts_text)
    cpu_usage = beat.cpu_usage_percent if beat is not None else 0.0
    return NodeCapacity(
        node_id, hostname, ready, labels, cpu, memory, gpus, cpu_held, memory_held, gpus_held, cpu_usage
    )
