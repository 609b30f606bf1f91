"""Which nodes a fleet task's targets name: a pure function of the targets, the known nodes and what each
``query:`` target selects (read_selections reads that, on the same node documents GET /api/nodes?q= matches)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from redis import Redis

from manager_api.services.errors import INVALID_REQUEST, Invalid
from manager_api.services.nodes import documents
from manager_api.services.nodes import query as node_query
from manager_api.services.placement.filters import matches_host
from manager_api.services.placement.model import Candidate

EVERY_ONLINE_NODE = "*"
"""The target that names every node online at start."""

QUERY_PREFIX = "query:"
"""A target ``query:<node query>`` names every node the query (document 003 §5.1.2) selects, online or not."""

NO_MATCH = "no node matches this target"
NODE_OFFLINE = "node offline"
NO_ONLINE_NODE = "no node online"


@dataclass(frozen=True)
class HostPlan:
    """One row-to-be of a task's hosts: a node to run on, or a target that cannot run (``error`` says why)."""

    target: str
    node_id: str | None = None
    hostname: str = ""
    ip: str = ""
    error: str | None = None  # set: the host is dispatch_failed


@dataclass(frozen=True)
class Fleet:
    """What a task's targets are resolved against: the known nodes, and the ids each query target selects."""

    nodes: list[Candidate]
    selections: dict[str, frozenset[str]]


def queries(targets: Sequence[str]) -> dict[str, node_query.NodeQuery]:
    """Each ``query:`` target (stripped) parsed; a malformed one is Invalid naming ``targets``.

    Called when a task or a schedule is created, so that neither is ever stored with a query it cannot run.
    """
    parsed: dict[str, node_query.NodeQuery] = {}
    for raw in targets:
        target = raw.strip()
        if target.startswith(QUERY_PREFIX) and target not in parsed:
            try:
                parsed[target] = node_query.parse(target[len(QUERY_PREFIX) :], parameter="targets")
            except Invalid as exc:
                # As schema errors are reported: the field named in "errors" too.
                reason = exc.message.removeprefix(f"{INVALID_REQUEST}: targets: ")
                raise Invalid(exc.message, {"errors": {"targets": [f"{target!r}: {reason}"]}}) from None
    return parsed


def read_selections(redis: Redis, offline_after_intervals: int, targets: Sequence[str]) -> dict[str, frozenset[str]]:
    """The ids of the nodes each ``query:`` target of ``targets`` selects now (no read without one)."""
    parsed = queries(targets)
    if not parsed:
        return {}
    shown = documents.matching(redis, offline_after_intervals, None)
    return {target: frozenset(doc["id"] for doc in shown if query.matches(doc)) for target, query in parsed.items()}


NAMED_AT_MOST = 1000
"""Targets that only name nodes (id, hostname, IP) are looked up by name up to this many (else every node is read)."""


def names_only(targets: Sequence[str]) -> list[str] | None:
    """The targets, stripped, when each one names nodes by id, hostname or IP alone (no ``*``, label or query),
    so that only the nodes of those names need reading; None otherwise."""
    named = [raw.strip() for raw in targets]
    if len(named) > NAMED_AT_MOST:
        return None
    if any(t == EVERY_ONLINE_NODE or "=" in t or t.startswith(QUERY_PREFIX) for t in named):
        return None
    return named


def _matches(node: Candidate, target: str) -> bool:
    if "=" in target:
        key, _, value = target.partition("=")
        return node.labels.get(key.strip()) == value.strip()
    return node.node_id == target or matches_host(node, target)


def resolve(
    targets: Sequence[str], nodes: Sequence[Candidate], selections: Mapping[str, Collection[str]] | None = None
) -> list[HostPlan]:
    """One plan per matched node (in target order, each node once) and one per target that matched nothing.

    Items are node ids, hostnames (any case), IPs, ``key=value`` labels, ``*`` (every online node), or
    ``query:<node query>`` (the nodes whose ids ``selections`` holds for it, see read_selections). A matched
    offline node is planned as failed "node offline" so the user sees it instead of losing it.
    """
    selections = selections or {}
    plans: list[HostPlan] = []
    seen_nodes: set[str] = set()
    seen_targets: set[str] = set()
    for raw in targets:
        target = raw.strip()
        if target in seen_targets:
            continue
        seen_targets.add(target)
        if target == EVERY_ONLINE_NODE:
            matched = [n for n in nodes if n.online]
            missing = NO_ONLINE_NODE
        elif target.startswith(QUERY_PREFIX):
            selected = selections.get(target, ())
            matched = [n for n in nodes if n.node_id in selected]
            missing = NO_MATCH
        else:
            matched = [n for n in nodes if _matches(n, target)]
            missing = NO_MATCH
        if not matched:
            plans.append(HostPlan(target=target, error=missing))
            continue
        for node in matched:
            if node.node_id in seen_nodes:
                continue
            seen_nodes.add(node.node_id)
            plans.append(
                HostPlan(
                    target=target,
                    node_id=node.node_id,
                    hostname=node.hostname,
                    ip=node.ip,
                    error=None if node.online else NODE_OFFLINE,
                )
            )
    return plans
