"""The placement engine: every demand of a plan to a node through the filters and one ranking strategy.

``plan`` is pure (no DB, no Redis) so it can be unit-tested and benchmarked; candidates.py builds its
nodes from the database (facts, labels, reservations, tasks) and nodes.snapshot (who is online, live load).
Business placement (document 001 §7's "scheduler") plans with ranking.BALANCE, the manual's deployments
(task_groups.place) with ranking.LEAST_LOADED; filters.py says which nodes may take a demand and why not.
A demand that asks for a node it already runs on (``prefer_node``: restart, update) stays there when that
node still passes the filters; one of ``count`` instances with ``distinct_nodes`` goes to a node that holds
no other instance of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from manager_api.services.placement import filters, refusals
from manager_api.services.placement.model import Candidate, Demand, Placement, Room
from manager_api.services.placement.ranking import BALANCE, Ranking
from manager_api.services.placement.refusals import Plan


def rooms_of(nodes: Sequence[Candidate]) -> list[Room]:
    """A fresh Room per node: what a plan starts from."""
    return [Room(node) for node in nodes]


def choose(online: Sequence[Room], preferred: Room | None, demand: Demand, ranking: Ranking) -> Room | None:
    """The room one instance of ``demand`` goes to: ``preferred`` (its ``prefer_node``) while it passes the
    filters, else the best of ``online`` (the rooms of online nodes) by ``ranking``; None when none fits."""
    if preferred is not None and filters.refused_for(preferred, demand) is None:
        return preferred
    return ranking.best(filters.narrow(online, demand), demand)


def plan(
    nodes: Sequence[Candidate],
    demands: Sequence[Demand],
    ranking: Ranking = BALANCE,
    held: Mapping[str, Iterable[str]] | None = None,
) -> Plan:
    """Place every demand in order, counting earlier placements of the same plan; rejections say why.

    A demand that fits nowhere gets its refusal (the most telling node reasons and a count per kind over
    every node) and takes nothing, and the later demands are still planned, so one answer lists every
    component that cannot be placed. ``held`` (node id -> demand ids) names the nodes that already hold an
    instance of a distinct_nodes demand from before this plan (an app's running instances).
    """
    rooms = rooms_of(nodes)
    if held:
        for room in rooms:
            if held_here := held.get(room.node.node_id):
                room.holds = set(held_here)
    online = [room for room in rooms if room.node.online]
    by_id = {room.node.node_id: room for room in rooms}
    result = Plan()
    for demand in demands:
        preferred = by_id.get(demand.prefer_node) if demand.prefer_node else None
        for _instance in range(demand.count):
            chosen = choose(online, preferred, demand, ranking)
            if chosen is None:
                refusals.reject(result, rooms, demand)
                break
            score = ranking.score(chosen, demand)
            chosen.take(demand)
            result.placements.append(
                Placement(demand.component_id, chosen.node.node_id, chosen.node.hostname, round(score, 4))
            )
    return result
