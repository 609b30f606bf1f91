"""A plan's outcome: the placements made, and for each refused demand the nodes' reasons, bounded and counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from manager_api.services.placement import filters
from manager_api.services.placement.model import Demand, Placement, Room

NO_NODES = "no node has joined"
"""The only reason given when there is no node at all."""

MAX_NODE_REASONS = 20
"""Node reasons listed per refused component; the rest are only counted (like Nomad's placement failure
summary), so a refusal over thousands of nodes stays readable and bounded."""


@dataclass
class Plan:
    """Where every demand of one plan went, and why the refused ones fit nowhere."""

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


_RANK = {kind: i for i, kind in enumerate(filters.RANK)}


def reject(result: Plan, rooms: Sequence[Room], demand: Demand) -> None:
    """Record why no room takes ``demand``: every node counted, the MAX_NODE_REASONS most telling named."""
    counts = dict.fromkeys(filters.REJECTION_KINDS, 0)
    refused: list[tuple[int, float, int, str]] = []
    for position, room in enumerate(rooms):
        found = filters.refused_for(room, demand)
        if found is None:  # cannot happen (the ranking would have taken it); never name a node that fits
            continue
        kind, shortfall = found
        counts[kind] = counts.get(kind, 0) + 1
        refused.append((_RANK[kind], shortfall, position, kind))
    refused.sort()
    reasons = []
    for _, _, position, kind in refused[:MAX_NODE_REASONS]:
        room = rooms[position]
        reasons.append(f"{room.node.hostname or room.node.node_id}: {filters.reason(room, demand, kind)}")
    if len(refused) > MAX_NODE_REASONS:
        reasons.append(f"… and {len(refused) - MAX_NODE_REASONS} more nodes")
    result.rejections[demand.component_id] = reasons or [NO_NODES]
    result.rejection_summary[demand.component_id] = counts
