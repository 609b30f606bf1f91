"""The business scheduler (document 001 §7): which node each component goes to, and why not the others.

``plan`` is pure (no DB, no Redis) so it can be unit-tested and benchmarked; ``load_nodes`` builds its
input from the database (facts, labels, reservations) and Redis (who is online, live CPU).

INTERFACE STUB written by the lead; the scheduler helper fills in the bodies (signatures may gain
optional keyword arguments, never lose any).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redis import Redis


@dataclass(frozen=True)
class NodeCapacity:
    """One node as the scheduler sees it: totals from its facts, minus what corral already placed there."""

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


@dataclass
class Plan:
    placements: list[Placement] = field(default_factory=list)
    rejections: dict[str, list[str]] = field(default_factory=dict)
    """component_id -> one reason per node, e.g. "node-2: memory 512 MB free < 1024 MB"."""

    @property
    def ok(self) -> bool:
        return not self.rejections


def plan(nodes: Sequence[NodeCapacity], demands: Sequence[Demand]) -> Plan:
    """Place every demand in order, counting earlier placements of the same plan; rejections say why."""
    raise NotImplementedError


def load_nodes(
    redis: Redis, offline_after_intervals: int, exclude_business_id: str | None = None
) -> list[NodeCapacity]:
    """Every known node with its capacity, reservations (of active components not being replaced: those
    of ``exclude_business_id`` are left out) and online status."""
    raise NotImplementedError
