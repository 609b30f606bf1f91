"""The nodes as placement sees them (model.Candidate), from the database and nodes.snapshot.

``load_nodes`` (businesses): facts, effective labels, reservations of active components, ready or not;
``node_loads`` (the manual's deployments): live load and the deployment tasks still live on each node.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from peewee import fn
from redis import Redis

from manager_api.db import database
from manager_api.models import AppInstance, BusinessComponent, DeploymentTask, Node
from manager_api.services import access
from manager_api.services.deployments.state import LIVE_STATES
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.placement.model import Candidate
from shared import heartbeat
from shared.states import ComponentState

ACTIVE_COMPONENT_STATES = tuple(s.value for s in ComponentState if s.active)
"""Component states that hold their reservation on their node."""


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
    held = {node_id: (float(cpu or 0.0), int(memory or 0), int(gpus or 0)) for node_id, cpu, memory, gpus in rows}
    for node_id, (cpu, memory) in app_reservations().items():
        have = held.get(node_id, NOTHING_HELD)
        held[node_id] = (have[0] + cpu, have[1] + memory, have[2])
    return held


def app_reservations() -> dict[str, tuple[float, int]]:
    """node id -> (cpu cores, memory MB) held by app instances (resAlloc) the manager still wants there or
    that have not confirmed their stop: businesses and apps share their nodes' capacity."""
    query = (
        AppInstance.select(AppInstance.node, fn.SUM(AppInstance.cpus), fn.SUM(AppInstance.mem_mb))
        .where(AppInstance.node.is_null(False), (AppInstance.cpus > 0) | (AppInstance.mem_mb > 0))
        .group_by(AppInstance.node)
    )
    rows = database.execute(query).fetchall()
    return {node_id: (float(cpu or 0.0), int(memory or 0)) for node_id, cpu, memory in rows}


# Placement may run many times a second over thousands of nodes whose facts change only at a join and
# whose reservations and heartbeats change far less often than that: each process keeps the last
# Candidate it built per node with everything it was built from (hostname, facts text, labels text,
# reservation, raw heartbeat summary, IP), and reuses it while that is unchanged. Those inputs are read afresh
# by every placement and compared, never trusted from an earlier one, so a change made by another worker
# process (a label PUT, a rejoin with new facts, a reservation) is seen by the next placement in this one.
_built: dict[str, tuple[tuple[Any, ...], Candidate]] = {}

NOTHING_HELD = (0.0, 0, 0)


# Nodes heartbeat every few seconds, so a placement a few seconds after the last one finds nearly every
# heartbeat new: what only a join or a label change alters (parsed labels and capacity) is then taken from
# the node's last Candidate when its texts are unchanged, and else parsed once per distinct text.
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


def load_nodes(redis: Redis, offline_after_intervals: int, exclude_business_id: str | None = None) -> list[Candidate]:
    """Every known node with its capacity, reservations (of active components not being replaced: those
    of ``exclude_business_id`` are left out) and online status.

    When a business is excluded, its caller re-plans every component of it that should keep running
    (with ``prefer_node`` set to where each runs), so what it keeps is counted again by the plan itself.
    """
    query = Node.select(Node.id, Node.hostname, Node.facts, Node.labels, Node.ip).where(known()).order_by(Node.id)
    rows = database.execute(query).fetchall()
    held = reservations(exclude_business_id)
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    built, summaries, ready_ids = _built, live.raw, live.ready
    out = []
    for node_id, hostname, facts_text, labels_text, ip in rows:
        inputs = (hostname, facts_text, labels_text, held.get(node_id, NOTHING_HELD), summaries.get(node_id), ip)
        ready = node_id in ready_ids
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
    return access.within_scope(redis, offline_after_intervals, out)


def _build(
    node_id: str,
    inputs: tuple[Any, ...],
    ready: bool,
    beat: heartbeat.Summary | None,
    cached: tuple[tuple[Any, ...], Candidate] | None,
) -> Candidate:
    """The Candidate of ``node_id`` from its inputs (hostname, facts text, labels text, reservation, raw
    summary, IP), reusing the parsed facts and labels of its last one when those texts are unchanged."""
    hostname, facts_text, labels_text, (cpu_held, memory_held, gpus_held), _raw, ip = inputs
    if cached is not None and cached[0][1] == facts_text and cached[0][2] == labels_text:
        # Only the heartbeat, the reservation or the hostname changed (the usual case): the parsed facts
        # and labels of the last Candidate still hold.
        last = cached[1]
        labels, cpu, memory, gpus = last.labels, last.cpu_cores, last.memory_mb, last.gpus
    else:
        labels = _labels(labels_text)
        cpu, memory, gpus = _capacity(facts_text)
    cpu_usage, memory_usage = (beat.cpu_usage_percent, beat.memory_usage_percent) if beat else (0.0, 0.0)
    held = (cpu_held, memory_held, gpus_held)
    return Candidate(node_id, hostname, ready, labels, cpu, memory, gpus, *held, cpu_usage, memory_usage, ip)


def active_task_counts() -> dict[str, int]:
    """Tasks still live per node id."""
    query = (
        DeploymentTask.select(DeploymentTask.node, fn.COUNT(DeploymentTask.id))
        .where(DeploymentTask.state.in_([s.value for s in LIVE_STATES]))
        .group_by(DeploymentTask.node)
        .tuples()
    )
    return {node_id: count for node_id, count in query}


def node_loads(redis: Redis, offline_after_intervals: int) -> list[Candidate]:
    """Every node as the manual's deployments place on it: online, live cpu% and memory%, active tasks."""
    rows = list(Node.select(Node.id, Node.hostname, Node.ip).where(known()).tuples())
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    counts = active_task_counts()
    loads = []
    for node_id, hostname, ip in rows:
        beat = live.summary(node_id)
        loads.append(
            Candidate(
                node_id,
                hostname,
                live.is_online(node_id),
                cpu_usage_percent=beat.cpu_usage_percent if beat else 0.0,
                memory_usage_percent=beat.memory_usage_percent if beat else 0.0,
                ip=ip,
                active_tasks=counts.get(node_id, 0),
            )
        )
    return access.within_scope(redis, offline_after_intervals, loads)
