"""What placement works on: the one node model (Candidate), what is asked (Demand) and where it went.

A deployment's task group, a business component and a fleet task's target all see a node as a Candidate;
a deployment's group and a business component (and, later, an app's instances: a count with a spread rule)
are each a Demand placed by engine.plan or task_groups.place through the same filters and rankings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

NO_LABELS: Mapping[str, str] = MappingProxyType({})


class Candidate(NamedTuple):
    """One node as placement and target resolution see it: liveness, labels, capacity, reservations, load.

    A NamedTuple rather than a frozen dataclass: one is built per node whenever its heartbeat changed,
    and at 1,000 nodes the dataclass's per-field setattr was a third of a placement's time.
    """

    node_id: str
    hostname: str
    online: bool
    """Whether it takes placements now (nodes.snapshot): for businesses, online and its worker takes jobs
    (candidates.load_nodes); for deployments and fleet task targets, online (as the manual always had it)."""
    labels: Mapping[str, str] = NO_LABELS  # effective labels: the agent's, overridden by the API's
    cpu_cores: float = 0.0  # total (facts cpu_count, or the agent's --cpu-cores)
    memory_mb: int = 0  # total (facts memory_total_mb, or --memory-mb)
    gpus: int = 0  # total (facts gpu_count, or --gpus)
    cpu_reserved: float = 0.0  # by active components already placed here
    memory_reserved: int = 0
    gpus_reserved: int = 0
    cpu_usage_percent: float = 0.0  # live, from the last heartbeat
    memory_usage_percent: float = 0.0  # live, from the last heartbeat
    ip: str = ""
    active_tasks: int = 0  # deployment tasks still live here


@dataclass(frozen=True)
class Demand:
    """What one placement asks for: a business component's resource_requirements and affinity, a
    deployment's task group (its host pin and how many tasks it adds), or ``count`` instances of one thing."""

    component_id: str
    cpu_cores: float = 0.0
    memory_mb: int = 0
    gpu: bool = False  # needs one whole free GPU
    require_gpu: bool = False  # affinity: only nodes that have GPUs
    node_labels: Mapping[str, str] = field(default_factory=dict)  # affinity: all must match
    prefer_node: str | None = None  # keep it where it is (restart, update) when that node still fits
    host: str | None = None  # pinned to the node with this IP or hostname (any case)
    tasks: int = 0  # tasks it adds to its node's load (ranking.LeastLoaded)
    count: int = 1  # instances to place
    distinct_nodes: bool = False  # spread: every instance on another node
    only_nodes: frozenset[str] | None = None  # an app's nodeQuery: only these node ids (None: any)


@dataclass(frozen=True)
class Placement:
    """Where one instance of a demand goes."""

    component_id: str
    node_id: str
    hostname: str
    score: float  # utilisation of the chosen node after placing (lower = emptier)


class Room:
    """What is left on one node while a plan is built: reservations plus this plan's own placements."""

    __slots__ = ("node", "cpu_used", "memory_used", "gpus_used", "tasks_placed", "holds")

    def __init__(self, node: Candidate) -> None:
        self.node = node
        self.cpu_used = node.cpu_reserved
        self.memory_used = node.memory_reserved
        self.gpus_used = node.gpus_reserved
        self.tasks_placed = 0
        self.holds: set[str] | None = None  # ids of the demands it took, kept only for distinct_nodes

    def take(self, demand: Demand) -> None:
        """Count ``demand`` as placed here."""
        self.cpu_used += demand.cpu_cores
        self.memory_used += demand.memory_mb
        self.gpus_used += 1 if demand.gpu else 0
        self.tasks_placed += demand.tasks
        if demand.distinct_nodes:
            if self.holds is None:
                self.holds = set()
            self.holds.add(demand.component_id)
