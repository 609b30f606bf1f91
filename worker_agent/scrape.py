"""What the status port's /metrics answers: the node's CPU and memory, what the agent supervises, its process.

Everything is read at scrape time from the agent's own records and psutil, nothing is counted as it happens:
the answer is right from the agent's first second, and an agent restarted over the same data directory
answers for the tasks and instances it adopted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import psutil
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.states import ComponentState, TaskState

if TYPE_CHECKING:
    from .agent import Agent

PREFIX = "corral_"

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of the text format version this prometheus_client writes."""

HEARTBEAT_GAUGES = {
    "cpu_usage_percent": "CPU use of the node over the last heartbeat interval, in percent",
    "memory_usage_percent": "Memory use of the node at the last heartbeat, in percent",
    "disk_usage_percent": "Use of the node's root file system at the last heartbeat, in percent",
    "load1": "The node's 1-minute load average at the last heartbeat",
}
"""Figures of the last heartbeat shown as gauges, ``corral_node_<name>``: the numbers the manager got."""


class AgentCollector(Collector):
    """The node's figures and the agent's supervised work, read from ``agent`` at each scrape."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        info = GaugeMetricFamily(PREFIX + "agent_info", "The agent's node", labels=["node", "hostname"])
        info.add_metric([agent.node_id, agent.settings.hostname], 1)
        yield info
        yield GaugeMetricFamily(
            PREFIX + "agent_joined",
            "Whether the agent has joined and works its queue (1) or not (0)",
            value=agent.joined,
        )
        yield from self._node()
        yield _by_state(
            "agent_tasks", "Deployment tasks the agent keeps a record of, by state", agent.supervisor.count_by_state(),
            ["STARTING", *(s.value for s in TaskState if s is not TaskState.PENDING)],
        )  # fmt: skip
        yield GaugeMetricFamily(
            PREFIX + "agent_commands_running", "Fleet commands running now", value=agent.commands.running_count()
        )
        yield _by_state(
            "agent_components", "Business components the agent keeps a record of, by state",
            agent.components.count_by_state(), [s.value for s in ComponentState],
        )  # fmt: skip
        instances = GaugeMetricFamily(
            PREFIX + "agent_app_instances", "App instances on this node, by app, state and health",
            labels=["app", "state", "health"],
        )  # fmt: skip
        restarts = GaugeMetricFamily(
            PREFIX + "agent_app_instance_restarts",
            "Automatic restarts of the app instances this node holds now, by app",
            labels=["app"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        restarted: dict[str, int] = {}
        for app, state, health, restart_count in agent.instances.census():
            counts[app, state, health] = counts.get((app, state, health), 0) + 1
            restarted[app] = restarted.get(app, 0) + restart_count
        for labels, count in sorted(counts.items()):
            instances.add_metric(list(labels), count)
        for app, count in sorted(restarted.items()):
            restarts.add_metric([app], count)
        yield instances
        yield restarts

    def _node(self) -> Iterator[Metric]:
        """The node's CPU time and memory now (psutil), and its last heartbeat's percentages."""
        cpu = CounterMetricFamily(PREFIX + "node_cpu_seconds", "CPU time of the node, by mode", labels=["mode"])
        for mode, seconds in psutil.cpu_times()._asdict().items():
            cpu.add_metric([mode], seconds)
        yield cpu
        yield GaugeMetricFamily(PREFIX + "node_cpus", "Logical CPUs of the node", value=psutil.cpu_count() or 1)
        memory = psutil.virtual_memory()
        yield GaugeMetricFamily(PREFIX + "node_memory_total_bytes", "Physical memory of the node", value=memory.total)
        yield GaugeMetricFamily(
            PREFIX + "node_memory_available_bytes",
            "Memory of the node available to new processes without swapping",
            value=memory.available,
        )
        figures = self.agent.last_figures
        for name, help_text in HEARTBEAT_GAUGES.items():
            if figures is not None and isinstance(figures.get(name), int | float):
                yield GaugeMetricFamily(PREFIX + "node_" + name, help_text, value=float(figures[name]))


def _by_state(name: str, help_text: str, counts: dict[str, int], every: list[str]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, help_text, labels=["state"])
    for state in [*every, *sorted(s for s in counts if s not in every)]:
        family.add_metric([state], counts.get(state, 0))
    return family


def registry_of(agent: Agent) -> CollectorRegistry:
    """The agent's registry: its collector and prometheus_client's process metrics (``process_*``) of the agent."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text of ``registry``, read now."""
    return generate_latest(registry)
