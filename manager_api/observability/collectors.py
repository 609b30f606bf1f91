"""What a scrape reads from the database and Redis: the fleet's state as it is now, whichever process changed it.

One query per family, counted by the database (GROUP BY), and one Redis pipeline per per-node family, so a
scrape at 10,000 nodes costs a few queries and three round trips (bench/bench_metrics.py). The per-node families
(queue length, report stream backlog) are one series per node: 10,000 nodes are 10,000 series each, which
Prometheus takes in its stride; drop them with ``metric_relabel_configs`` if they are not wanted (README).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from peewee import fn
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue

from manager_api.models import AppInstance, Business, BusinessComponent, FleetTask, TaskHost
from manager_api.observability.instruments import PREFIX
from manager_api.services.nodes import presence, snapshot
from shared import keys
from shared.states import BusinessState, ComponentState, FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)


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
        queues = GaugeMetricFamily(
            PREFIX + "node_queue_length", "Jobs waiting in each node's queue (one series per node)", labels=["node"]
        )
        pending = GaugeMetricFamily(
            PREFIX + "report_stream_pending",
            "Reports of each node's stream delivered to the manager and not yet applied (one series per node)",
            labels=["node"],
        )
        lag = GaugeMetricFamily(
            PREFIX + "report_stream_lag",
            "Reports of each node's stream not yet delivered to the manager (Redis 7 and later; one series per node)",
            labels=["node"],
        )
        with redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.llen(Queue.redis_queue_namespace_prefix + keys.node_queue(node_id))
                pipe.xinfo_groups(keys.node_reports(node_id))
            answers = pipe.execute(raise_on_error=False)
        for node_id, length, groups in zip(ids, answers[::2], answers[1::2], strict=True):
            if isinstance(length, int):
                queues.add_metric([node_id], length)
            if isinstance(groups, ResponseError) or not isinstance(groups, list):
                continue  # no stream yet: a node that never reported
            group = next((g for g in groups if _text(g.get("name")) == keys.EVENTS_GROUP), None)
            if group is None:
                continue
            pending.add_metric([node_id], int(group.get("pending") or 0))
            if group.get("lag") is not None:
                lag.add_metric([node_id], int(group["lag"]))
        yield queues
        yield pending
        yield lag

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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
