"""What a scrape reads from the database and Redis: the fleet's state as it is now, whichever process changed it.

One query per family, counted by the database (GROUP BY), and, for each node's queue and report stream, one
Lua script per NODE_CHUNK nodes that answers plain integers: at 10,000 nodes a scrape costs a few queries and
a dozen round trips (bench/bench_metrics.py). The pipeline of two commands per node it replaces spent most of
a scrape packing 20,000 commands and parsing 10,000 XINFO answers into dicts in Python.

The per-node families name only the nodes with something waiting (a queue holding jobs, a stream behind),
the worst NODE_SERIES_LIMIT of them; fleet-wide totals count every node. An idle fleet of 10,000 nodes is
then a few dozen series rather than 30,000 zeros that each cost Prometheus memory and the scrape time
(Prometheus's guidance: no unbounded label values), and a busy one stays bounded (README, Prometheus).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from peewee import fn
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue

from manager_api.models import AppInstance, Business, BusinessComponent, FleetTask, TaskHost
from manager_api.observability.instruments import PREFIX
from manager_api.services.nodes import presence, snapshot
from shared import keys
from shared.states import BusinessState, ComponentState, FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)

NODE_SERIES_LIMIT = 500
"""Most series of each per-node family in one scrape: the nodes with the longest queues (or backlogs) first.
Beyond it a busy fleet-wide moment would bring back one series per node; the totals still count every node,
and ``corral_node_series_omitted`` says how many were left out."""

NODE_CHUNK = 1000
"""Nodes read by one run of _BACKLOG_SCRIPT: about 3 ms of Redis's time (measured with 10,000 nodes), short
enough not to hold up the nodes' heartbeats and the duties sharing that Redis."""

# For each node (KEYS: its queue, its reports stream): LLEN, and the manager's group's pending and lag from
# XINFO GROUPS, -1 where there is no stream, no group or no lag (Redis before 7, or a lag Redis cannot tell).
# A flat array of integers: hiredis parses it at once, where redis-py turns every XINFO answer into a dict.
_BACKLOG_SCRIPT = """
local out, n, group = {}, 0, ARGV[1]
for i = 1, #KEYS, 2 do
  local pending, lag = -1, -1
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[i + 1])
  if ok then
    for _, g in ipairs(groups) do
      if g[2] == group then
        for j = 3, #g, 2 do
          if g[j] == 'pending' then pending = g[j + 1] elseif g[j] == 'lag' then lag = g[j + 1] or -1 end
        end
      end
    end
  end
  out[n + 1] = redis.call('LLEN', KEYS[i])
  out[n + 2] = pending
  out[n + 3] = lag
  n = n + 3
end
return out
"""


class Backlog(NamedTuple):
    """What waits for one node and for the manager from it; None where Redis has no such figure."""

    queue: int
    """Jobs waiting in the node's queue (0 for a queue Redis does not hold: an empty list is no key)."""
    pending: int | None
    """Reports of the node's stream delivered to the manager's group and not yet acknowledged."""
    lag: int | None
    """Reports of the node's stream not yet delivered to the manager's group (Redis 7 and later)."""


def read_backlogs(redis: Redis, node_ids: Sequence[str]) -> list[Backlog]:
    """The backlog of each of ``node_ids``, in their order: one script run per NODE_CHUNK nodes."""
    script = redis.register_script(_BACKLOG_SCRIPT)
    prefix = Queue.redis_queue_namespace_prefix
    backlogs: list[Backlog] = []
    for start in range(0, len(node_ids), NODE_CHUNK):
        chunk = node_ids[start : start + NODE_CHUNK]
        node_keys = [
            key for node_id in chunk for key in (prefix + keys.node_queue(node_id), keys.node_reports(node_id))
        ]
        answer = script(keys=node_keys, args=[keys.EVENTS_GROUP])
        backlogs.extend(
            Backlog(int(queue), None if pending < 0 else int(pending), None if lag < 0 else int(lag))
            for queue, pending, lag in zip(answer[::3], answer[1::3], answer[2::3], strict=True)
        )
    return backlogs


def _worst(
    family: GaugeMetricFamily, values: Iterable[tuple[str, int]], omitted: GaugeMetricFamily
) -> GaugeMetricFamily:
    """``family`` with one sample per node of ``values`` above 0, the NODE_SERIES_LIMIT largest (largest first);
    how many more there were goes to ``omitted``."""
    waiting = sorted(((value, node_id) for node_id, value in values if value > 0), key=lambda vn: (-vn[0], vn[1]))
    for value, node_id in waiting[:NODE_SERIES_LIMIT]:
        family.add_metric([node_id], value)
    omitted.add_metric([family.name], max(0, len(waiting) - NODE_SERIES_LIMIT))
    return family


def _counted(family: GaugeMetricFamily, counts: dict[Any, int], every: Iterable[str]) -> GaugeMetricFamily:
    """``family`` with one sample per value of ``every`` (0 when absent) and per other value counted."""
    known = list(every)
    for value in [*known, *sorted(str(k) for k in counts if str(k) not in known)]:
        family.add_metric([value], counts.get(value, 0))
    return family


class FleetCollector(Collector):
    """The fleet's state at scrape time: nodes, queues, report streams, fleet tasks, apps, businesses.

    ``redis`` and ``offline_after_intervals`` are read at each scrape (the app's); the database is the request's.
    A family whose source fails is left out of the answer and counted in ``corral_scrape_errors``, so a Redis
    outage still shows the database's families (and the other way round).
    """

    def __init__(self, redis: Callable[[], Redis], offline_after_intervals: Callable[[], int]) -> None:
        self.redis = redis
        self.offline_after_intervals = offline_after_intervals

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            PREFIX + "scrape_errors", "Families left out of this scrape because their source failed", labels=["part"]
        )
        for part, read in (
            ("nodes", self._nodes),
            ("fleet_tasks", self._fleet_tasks),
            ("apps", self._apps),
            ("businesses", self._businesses),
        ):
            try:
                families = list(read())
            except Exception as exc:  # a scrape answers what it can: Redis down must not hide the database
                logger.warning("metrics: %s not collected: %s", part, exc)
                errors.add_metric([part], 1)
                continue
            yield from families
        yield errors

    # -- nodes and their Redis keys ----------------------------------------------------------------------
    def _nodes(self) -> Iterator[Metric]:
        redis = self.redis()
        ids = presence.known_ids()
        live = snapshot.read(redis, ids, self.offline_after_intervals())
        online = sum(1 for node_id in ids if live.is_online(node_id))
        nodes = GaugeMetricFamily(
            PREFIX + "nodes", "Nodes the manager knows, by status (the API's liveness rule)", labels=["status"]
        )
        nodes.add_metric(["online"], online)
        nodes.add_metric(["offline"], len(ids) - online)
        yield nodes
        yield GaugeMetricFamily(
            PREFIX + "nodes_ready",
            "Online nodes whose agent's worker takes jobs",
            value=sum(1 for node_id in ids if live.is_ready(node_id)),
        )
        yield from _backlogs(redis, ids)

    # -- the database ------------------------------------------------------------------------------------
    def _fleet_tasks(self) -> Iterator[Metric]:
        tasks = dict(FleetTask.select(FleetTask.status, fn.COUNT(FleetTask.id)).group_by(FleetTask.status).tuples())
        yield _counted(
            GaugeMetricFamily(
                PREFIX + "fleet_tasks", "Fleet tasks kept (within retention), by status", labels=["status"]
            ),
            tasks,
            [s.value for s in FleetTaskStatus],
        )
        hosts = dict(TaskHost.select(TaskHost.status, fn.COUNT(TaskHost.id)).group_by(TaskHost.status).tuples())
        yield _counted(
            GaugeMetricFamily(
                PREFIX + "fleet_task_hosts",
                "Nodes' results of the fleet tasks kept (one per task and node), by status",
                labels=["status"],
            ),
            hosts,
            [s.value for s in HostRunStatus],
        )

    def _apps(self) -> Iterator[Metric]:
        instances = GaugeMetricFamily(
            PREFIX + "app_instances", "App instances, by app, state and health", labels=["app", "state", "health"]
        )
        restarts = GaugeMetricFamily(
            PREFIX + "app_instance_restarts",
            "Automatic restarts of each app's current instances, as their agents report them",
            labels=["app"],
        )
        by_app: dict[str, int] = {}
        rows = (
            AppInstance.select(AppInstance.app, AppInstance.state, AppInstance.health, fn.COUNT(AppInstance.id))
            .select_extend(fn.SUM(AppInstance.restarts))
            .group_by(AppInstance.app, AppInstance.state, AppInstance.health)
            .tuples()
        )
        for app, state, health, count, restarted in rows:
            instances.add_metric([app, state, health], count)
            by_app[app] = by_app.get(app, 0) + int(restarted or 0)
        for app, restarted in sorted(by_app.items()):
            restarts.add_metric([app], restarted)
        yield instances
        yield restarts

    def _businesses(self) -> Iterator[Metric]:
        businesses = dict(
            Business.select(Business.status, fn.COUNT(Business.business_id)).group_by(Business.status).tuples()
        )
        yield _counted(
            GaugeMetricFamily(PREFIX + "businesses", "Businesses, by state", labels=["state"]),
            businesses,
            [s.value for s in BusinessState],
        )
        components = dict(
            BusinessComponent.select(BusinessComponent.status, fn.COUNT(BusinessComponent.id))
            .group_by(BusinessComponent.status)
            .tuples()
        )
        yield _counted(
            GaugeMetricFamily(PREFIX + "business_components", "Business components, by state", labels=["state"]),
            components,
            [s.value for s in ComponentState],
        )


def _backlogs(redis: Redis, ids: list[str]) -> Iterator[Metric]:
    """Each node's queue and reports stream: the worst per node (up to the series limit), and the sums."""
    backlogs = read_backlogs(redis, ids)
    omitted = GaugeMetricFamily(
        PREFIX + "node_series_omitted",
        f"Nodes left out of a per-node family by its limit of {NODE_SERIES_LIMIT} series (the worst are kept)",
        labels=["family"],
    )
    yield _worst(
        GaugeMetricFamily(
            PREFIX + "node_queue_length",
            "Jobs waiting in the queue of each node whose queue holds any (the longest first; no series: empty)",
            labels=["node"],
        ),
        zip(ids, (b.queue for b in backlogs), strict=True),
        omitted,
    )
    yield GaugeMetricFamily(
        PREFIX + "node_queue_jobs", "Jobs waiting in the queues of all nodes", value=sum(b.queue for b in backlogs)
    )
    yield GaugeMetricFamily(
        PREFIX + "nodes_with_queued_jobs",
        "Nodes whose queue holds jobs",
        value=sum(1 for b in backlogs if b.queue > 0),
    )
    yield _worst(
        GaugeMetricFamily(
            PREFIX + "report_stream_pending",
            "Reports of each node's stream delivered to the manager and not yet applied (nodes with any)",
            labels=["node"],
        ),
        ((node_id, b.pending or 0) for node_id, b in zip(ids, backlogs, strict=True)),
        omitted,
    )
    yield _worst(
        GaugeMetricFamily(
            PREFIX + "report_stream_lag",
            "Reports of each node's stream not yet delivered to the manager (nodes with any; Redis 7 and later)",
            labels=["node"],
        ),
        ((node_id, b.lag or 0) for node_id, b in zip(ids, backlogs, strict=True)),
        omitted,
    )
    backlog = GaugeMetricFamily(
        PREFIX + "report_streams_backlog",
        "Reports of all nodes' streams not yet applied: delivered to the manager (pending) or not yet (lag)",
        labels=["state"],
    )
    backlog.add_metric(["pending"], sum(b.pending or 0 for b in backlogs))
    backlog.add_metric(["lag"], sum(b.lag or 0 for b in backlogs))
    yield backlog
    yield GaugeMetricFamily(
        PREFIX + "report_streams_behind",
        "Nodes whose reports stream holds reports the manager has not applied yet",
        value=sum(1 for b in backlogs if (b.pending or 0) + (b.lag or 0) > 0),
    )
    yield omitted
