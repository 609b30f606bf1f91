"""Which nodes a fleet task's targets name: a pure function of the targets and the known nodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from manager_api.services.placement.filters import matches_host
from manager_api.services.placement.model import Candidate

EVERY_ONLINE_NODE = "*"
"""The target that names every node online at start."""

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


def _matches(node: Candidate, target: str) -> bool:
    if "=" in target:
        key, _, value = target.partition("=")
        return node.labels.get(key.strip()) == value.strip()
    return node.node_id == target or matches_host(node, target)


def resolve(targets: Sequence[str], nodes: Sequence[Candidate]) -> list[HostPlan]:
    """One plan per matched node (in target order, each node once) and one per target that matched nothing.

    Items are node ids, hostnames (any case), IPs, ``key=value`` labels, or ``*`` (every online node). A
    matched offline node is planned as failed "node offline" so the user sees it instead of losing it.
    """
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
