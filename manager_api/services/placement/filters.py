"""The feasibility filters of placement, in order, and the words for each refusal.

Online, host pin, labels (every affinity label matches the node's effective labels), GPU (require_gpu: the
node has GPUs; gpu: one of its GPUs is free), distinct node (spread), CPU (free >= cpu_cores), memory
(free >= memory_mb). A node is refused for the first one it fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from manager_api.services.placement.model import Candidate, Demand, Room

CPU_SLACK = 1e-9
"""So that 0.1 + 0.2 cores fit in 0.3 free despite floating point."""

REJECTION_KINDS = ("memory", "cpu", "gpu", "labels", "offline")
"""What a node can refuse a business component for, the most telling first: a node that fails on a resource
has passed every other filter and is the nearest to fitting, an offline one tells the least. Every refusal
summary counts each of these (tests and clients read the zeros too)."""

RANK = ("memory", "cpu", "gpu", "distinct", "labels", "query", "host", "offline")
"""Every kind of refusal, the most telling first: REJECTION_KINDS plus those only a host pin or a spread
rule can give, and "query" (an app's nodeQuery does not select the node): counted only when they occur."""


def matches_host(node: Candidate, host: str) -> bool:
    """Whether ``host`` (an IP, or a hostname in any case) names ``node``."""
    return node.ip == host or node.hostname.lower() == host.lower()


def labels_match(node: Candidate, wanted: Mapping[str, str]) -> bool:
    """Whether every label of ``wanted`` is on ``node`` with that value."""
    labels = node.labels
    for key, value in wanted.items():
        if labels.get(key) != value:
            return False
    return True


def narrow(rooms: Sequence[Room], demand: Demand) -> Sequence[Room]:
    """The rooms (online already) that pass the host, label, GPU and distinct filters of ``demand``.

    The cheap filters first, as whole-list passes: the CPU and memory fit then runs on what is left.
    """
    candidates = rooms
    if demand.host is not None:
        host = demand.host
        candidates = [r for r in candidates if matches_host(r.node, host)]
    if demand.only_nodes is not None:
        only = demand.only_nodes
        candidates = [r for r in candidates if r.node.node_id in only]
    if demand.node_labels:
        candidates = [r for r in candidates if labels_match(r.node, demand.node_labels)]
    if demand.require_gpu or demand.gpu:
        gpu = demand.gpu
        candidates = [r for r in candidates if r.node.gpus > 0 and (not gpu or r.node.gpus - r.gpus_used >= 1)]
    if demand.distinct_nodes:
        candidates = [r for r in candidates if r.holds is None or demand.component_id not in r.holds]
    return candidates


def fits(room: Room, demand: Demand) -> bool:
    """Whether the free CPU and memory of ``room`` take ``demand``."""
    return (
        room.node.cpu_cores - room.cpu_used + CPU_SLACK >= demand.cpu_cores
        and room.node.memory_mb - room.memory_used >= demand.memory_mb
    )


def refused_for(room: Room, demand: Demand) -> tuple[str, float] | None:
    """(kind, shortfall) of the first filter that fails, or None when ``demand`` fits.

    Cheap (no text): it runs for every node when a demand fits nowhere. The shortfall orders nodes of one
    kind, the nearest to fitting first.
    """
    node = room.node
    if not node.online:
        return "offline", 0.0
    if demand.host is not None and not matches_host(node, demand.host):
        return "host", 0.0
    if demand.only_nodes is not None and node.node_id not in demand.only_nodes:
        return "query", 0.0
    if not labels_match(node, demand.node_labels):
        return "labels", 0.0
    if demand.require_gpu and node.gpus <= 0:
        return "gpu", 1.0  # after the nodes whose GPUs are only all taken
    if demand.gpu and node.gpus - room.gpus_used < 1:
        return "gpu", 0.0
    if demand.distinct_nodes and room.holds is not None and demand.component_id in room.holds:
        return "distinct", 0.0
    cpu_free = node.cpu_cores - room.cpu_used
    if cpu_free + CPU_SLACK < demand.cpu_cores:
        return "cpu", demand.cpu_cores - cpu_free
    memory_free = node.memory_mb - room.memory_used
    if memory_free < demand.memory_mb:
        return "memory", float(demand.memory_mb - memory_free)
    return None


def _num(value: float) -> str:
    """A figure for a reason: ``2`` rather than ``2.0``, ``1.5`` as is."""
    return f"{value:g}"


def reason(room: Room, demand: Demand, kind: str) -> str:
    """The words for a refusal of ``kind`` (as refused_for found it)."""
    node = room.node
    if kind in ("offline", "host"):
        return "offline" if kind == "offline" else f"not {demand.host}"
    if kind == "query":
        return "does not match the app's nodeQuery"
    if kind == "labels":
        for key, wanted in demand.node_labels.items():
            have = node.labels.get(key)
            if have != wanted:
                return f"label {key}={wanted} missing" + ("" if have is None else f" (has {key}={have})")
    if kind == "gpu":
        if demand.require_gpu and node.gpus <= 0:
            return "no GPU"
        return f"no free GPU ({room.gpus_used} of {node.gpus} reserved)"
    if kind == "distinct":
        return f"holds another instance of {demand.component_id}"
    if kind == "cpu":
        cpu_free = node.cpu_cores - room.cpu_used
        return f"cpu {_num(round(max(cpu_free, 0.0), 3))} cores free < {_num(demand.cpu_cores)} cores"
    memory_free = node.memory_mb - room.memory_used
    return f"memory {max(memory_free, 0)} MB free < {demand.memory_mb} MB"
