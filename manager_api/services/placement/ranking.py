"""How placement picks among the nodes that pass the filters: one strategy per kind of workload.

``BALANCE`` (businesses, document 001 §7): the node whose busiest resource (CPU or memory, and GPUs for a
GPU component) is least used after placing wins; ties go to the lower live CPU % of the last heartbeat,
then to the node id. ``LEAST_LOADED`` (the manual's deployments): the lowest live cpu% + memory% plus
TASK_PENALTY per task active or placed there; ties go to the hostname, then the node id, or for a group
pinned to a host to the node id alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from manager_api.services.placement.filters import CPU_SLACK, fits
from manager_api.services.placement.model import Demand, Room

TASK_PENALTY = 10.0
"""Score points (on the cpu% + memory% scale) per task already active or placed on a node."""


class Ranking(Protocol):
    """A ranking strategy: the best of the rooms that passed the cheap filters, and a chosen room's score."""

    def best(self, rooms: Sequence[Room], demand: Demand) -> Room | None:
        """The room among ``rooms`` whose free CPU and memory take ``demand`` and that ranks first, or None."""
        ...

    def score(self, room: Room, demand: Demand) -> float:
        """The score of ``room`` for ``demand`` (lower is better)."""
        ...


class Balance:
    """Keep every node's busiest resource as low as possible (business placement)."""

    def score(self, room: Room, demand: Demand) -> float:
        """The busiest resource's share of the node once ``demand`` is placed (0 empty, 1 full)."""
        node = room.node
        cpu = (room.cpu_used + demand.cpu_cores) / node.cpu_cores if node.cpu_cores > 0 else 0.0
        memory = (room.memory_used + demand.memory_mb) / node.memory_mb if node.memory_mb > 0 else 0.0
        share = cpu if cpu > memory else memory
        if demand.gpu and node.gpus > 0:
            share = max(share, (room.gpus_used + 1) / node.gpus)
        return share

    def best(self, rooms: Sequence[Room], demand: Demand) -> Room | None:
        """The room that fits ``demand`` and stays emptiest, or None.

        The hot loop of placement (nodes x components): the CPU and memory filters (filters.fits) and
        the score are inlined, and no reason text is built, which is only worth it when nothing fits.
        """
        cpu, memory, gpu = demand.cpu_cores - CPU_SLACK, demand.memory_mb, demand.gpu
        best: Room | None = None
        best_score = 0.0
        wanted_cpu = demand.cpu_cores
        for room in rooms:
            node = room.node
            cpu_total, memory_total = node.cpu_cores, node.memory_mb
            cpu_after = room.cpu_used + wanted_cpu
            memory_after = room.memory_used + memory
            if cpu_total - room.cpu_used < cpu or memory_total < memory_after:
                continue
            if gpu:
                score = self.score(room, demand)
            else:  # score() inlined: this line runs nodes x components times
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


class LeastLoaded:
    """Send work to the node with the least live load and the fewest tasks (the manual's deployments)."""

    def score(self, room: Room, demand: Demand) -> float:
        """Live cpu% + memory%, plus TASK_PENALTY per task active there or placed by this plan."""
        node = room.node
        return (
            node.cpu_usage_percent + node.memory_usage_percent + TASK_PENALTY * (node.active_tasks + room.tasks_placed)
        )

    def best(self, rooms: Sequence[Room], demand: Demand) -> Room | None:
        """The least loaded room that fits ``demand``, or None."""
        fitting = [room for room in rooms if fits(room, demand)]
        if not fitting:
            return None
        if demand.host is not None:  # among the nodes answering to one pin, the node id breaks ties
            return min(fitting, key=lambda room: (self.score(room, demand), room.node.node_id))
        return min(fitting, key=lambda room: (self.score(room, demand), room.node.hostname, room.node.node_id))


BALANCE = Balance()
LEAST_LOADED = LeastLoaded()
