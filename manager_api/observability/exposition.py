"""The text a scrape of the manager's /metrics answers: every process's instruments, the fleet, the processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from redis import Redis

from manager_api.observability import multiprocess
from manager_api.observability.collectors import FleetCollector
from manager_api.observability.instruments import PREFIX
from manager_api.observability.processes import ManagerProcesses


class _ThisProcess(Collector):
    """The instruments of this process alone: a manager app outside the launcher (tests, a WSGI server of one's own)."""

    def collect(self) -> Iterator[Metric]:
        return (family for family in REGISTRY.collect() if family.name.startswith(PREFIX))


def render(redis: Callable[[], Redis], offline_after_intervals: Callable[[], int]) -> bytes:
    """The Prometheus text exposition of the manager, read now."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess.enabled():
        multiprocess.add_processes(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(FleetCollector(redis, offline_after_intervals))
    registry.register(ManagerProcesses())
    return generate_latest(registry)
