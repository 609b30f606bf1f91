"""Where each task group of a deploy goes: the engine's filters and ranking.LEAST_LOADED over the nodes' load.

Each group is one Demand adding its tasks to a node's load. Pinned groups go first, to the least loaded
online node answering to their pin: they have no choice, and their load should steer the free ones away.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from manager_api.services.placement import filters
from manager_api.services.placement.engine import rooms_of
from manager_api.services.placement.model import Candidate, Demand, Room
from manager_api.services.placement.ranking import LEAST_LOADED, TASK_PENALTY

__all__ = ["TASK_PENALTY", "GroupRequest", "PlacementError", "TaskRequest", "place"]


@dataclass(frozen=True)
class TaskRequest:
    """A task to place: its name and the host it is pinned to, if any."""

    name: str
    pin: str | None = None


@dataclass(frozen=True)
class GroupRequest:
    """A task group to place; all its tasks go to one node."""

    index: int
    tasks: tuple[TaskRequest, ...]


class PlacementError(Exception):
    """No valid placement; the message names the group/task and node."""


def _demand(group: GroupRequest, host: str | None = None) -> Demand:
    return Demand(f"group {group.index}", host=host, tasks=len(group.tasks))


def _pinned_room(group: GroupRequest, rooms: Sequence[Room]) -> Room | None:
    """The room every pin of ``group`` names (each pin picks the least loaded online node it names)."""
    chosen: Room | None = None
    chosen_by = ""
    for task in group.tasks:
        if task.pin is None:
            continue
        pin = task.pin
        named = [room for room in rooms if filters.matches_host(room.node, pin)]
        if not named:
            raise PlacementError(f"task '{task.name}' of group {group.index} is pinned to unknown node '{pin}'")
        room = LEAST_LOADED.best([r for r in named if r.node.online], _demand(group, pin))
        if room is None:
            raise PlacementError(
                f"task '{task.name}' of group {group.index} is pinned to node '{pin}', which is offline"
            )
        if chosen is not None and room is not chosen:
            raise PlacementError(f"group {group.index} pins tasks to different nodes: '{chosen_by}' and '{pin}'")
        chosen, chosen_by = room, pin
    return chosen


def place(groups: Sequence[GroupRequest], nodes: Sequence[Candidate]) -> dict[int, str]:
    """Node id for each group index: pinned groups to their node, the rest to the least loaded online node."""
    rooms = rooms_of(nodes)
    result: dict[int, str] = {}
    for group in groups:
        room = _pinned_room(group, rooms)
        if room is not None:
            result[group.index] = room.node.node_id
            room.take(_demand(group))
    online = [room for room in rooms if room.node.online]
    for group in groups:
        if group.index in result:
            continue
        demand = _demand(group)
        room = LEAST_LOADED.best(filters.narrow(online, demand), demand)
        if room is None:
            raise PlacementError(f"no online node to run group {group.index}")
        result[group.index] = room.node.node_id
        room.take(demand)
    return result
