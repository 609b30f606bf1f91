"""Where each task group of a deploy goes: a pure function of the groups and the nodes' load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TASK_PENALTY = 10.0
"""Score points (on the cpu% + memory% scale) per task already active or placed on a node."""


@dataclass(frozen=True)
class NodeLoad:
    """A node as placement sees it."""

    id: str
    hostname: str
    ip: str
    online: bool
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    active_tasks: int = 0


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


def _matches(node: NodeLoad, host: str) -> bool:
    return node.ip == host or node.hostname.lower() == host.lower()


def _score(node: NodeLoad, placed: dict[str, int]) -> float:
    return node.cpu_percent + node.memory_percent + TASK_PENALTY * (node.active_tasks + placed.get(node.id, 0))


def _pinned_node(group: GroupRequest, nodes: Sequence[NodeLoad], placed: dict[str, int]) -> NodeLoad | None:
    chosen: NodeLoad | None = None
    chosen_by = ""
    for task in group.tasks:
        if task.pin is None:
            continue
        candidates = [n for n in nodes if _matches(n, task.pin)]
        if not candidates:
            raise PlacementError(f"task '{task.name}' of group {group.index} is pinned to unknown node '{task.pin}'")
        online = [n for n in candidates if n.online]
        if not online:
            raise PlacementError(
                f"task '{task.name}' of group {group.index} is pinned to node '{task.pin}', which is offline"
            )
        node = min(online, key=lambda n: (_score(n, placed), n.id))
        if chosen is not None and node.id != chosen.id:
            raise PlacementError(f"group {group.index} pins tasks to different nodes: '{chosen_by}' and '{task.pin}'")
        chosen, chosen_by = node, task.pin
    return chosen


def place(groups: Sequence[GroupRequest], nodes: Sequence[NodeLoad]) -> dict[int, str]:
    """Node id for each group index: pinned groups to their node, the rest to the least loaded online node."""
    placed: dict[str, int] = {}
    result: dict[int, str] = {}
    # Pinned groups first: they have no choice, and their load should steer the free ones away.
    for group in groups:
        node = _pinned_node(group, nodes, placed)
        if node is not None:
            result[group.index] = node.id
            placed[node.id] = placed.get(node.id, 0) + len(group.tasks)
    online = [n for n in nodes if n.online]
    for group in groups:
        if group.index in result:
            continue
        if not online:
            raise PlacementError(f"no online node to run group {group.index}")
        node = min(online, key=lambda n: (_score(n, placed), n.hostname, n.id))
        result[group.index] = node.id
        placed[node.id] = placed.get(node.id, 0) + len(group.tasks)
    return result
