"""Keeping an app at its count: place what is short, stop what is over, replace what is lost, old or misplaced.

One pass (``reconcile``) per app, inside the caller's write transaction; it returns the jobs to send after the
commit. The rules, in order:

- a stopped app: every instance gets STOP_INSTANCE;
- an instance lost (its node offline) for the app's ``unreachableSeconds`` is replaced: it leaves the count
  and gets STOP_INSTANCE (its node takes it when it comes back), and a new one is placed elsewhere;
- an instance on a node its app's ``nodeQuery`` no longer selects is moved (stopped, and placed again);
- rolling (instances of an older version left): one new instance is started, and only once it runs and is
  healthy (running, when the app has no checks) is one old instance stopped, and once its node confirmed the
  stop the next new one starts: never fewer than ``instances`` ready while it rolls (``instances`` - 1 when an
  old one is not ready), never more than ``instances`` + 1 at all;
- too many: the extra are stopped, the lost first, then the not running or unhealthy, then those on the
  nodes holding the most instances of the app (so the spread is kept), then the newest;
- too few: the missing are placed by the placement engine (services.placement.engine, ranking BALANCE):
  spread over the nodes the query selects (a distinct_nodes demand, round after round, so a node takes a
  second instance only once every selected node that fits holds one), fitting ``resAlloc``. What cannot be
  placed is kept on the app (``shortfall``) with the engine's reason per node.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from peewee import chunked
from redis import Redis

from manager_api.models import App, AppInstance, utcnow
from manager_api.services import audit
from manager_api.services.alerts import events as alerts
from manager_api.services.apps.specs import new_instance_id, resources, run_payload, secret_of, spec_of
from manager_api.services.apps.state import LOST, RUN, STOP, STOPPED, Jobs, stop_payload
from manager_api.services.nodes import documents
from manager_api.services.nodes import query as node_query
from manager_api.services.placement import candidates, engine
from manager_api.services.placement.model import Candidate, Demand, Placement

logger = logging.getLogger(__name__)

INSERT_BATCH = 100
"""New instance rows written per INSERT (SQLite allows 32,766 values in one statement; a row has 14)."""


class Fleet:
    """The nodes as one pass over some apps sees them, read once (lazily) and shared by those apps.

    Placements made during the pass are added to the candidates' reservations, so two apps reconciled in
    one tick do not both count the same free memory.
    """

    def __init__(self, redis: Redis, offline_after_intervals: int) -> None:
        self.redis = redis
        self.offline_after_intervals = offline_after_intervals
        self._nodes: list[Candidate] | None = None
        self._matching: dict[str, frozenset[str]] = {}

    def nodes(self) -> list[Candidate]:
        if self._nodes is None:
            self._nodes = candidates.load_nodes(self.redis, self.offline_after_intervals)
        return self._nodes

    def matching(self, query_text: str) -> frozenset[str]:
        """The ids of the nodes (online or not) that ``query_text`` selects."""
        found = self._matching.get(query_text)
        if found is None:
            query = node_query.parse(query_text, parameter="nodeQuery")
            # documents keeps each node's answer to a query while the node's row is unchanged.
            found = documents.matching_ids(self.redis, self.offline_after_intervals, query)
            self._matching[query_text] = found
        return found

    def take(self, node_id: str, cpus: float, memory_mb: int) -> None:
        """Count a placement of this pass in its node's reservations."""
        if self._nodes is None or (cpus <= 0 and memory_mb <= 0):
            return
        for i, node in enumerate(self._nodes):
            if node.node_id == node_id:
                self._nodes[i] = node._replace(
                    cpu_reserved=node.cpu_reserved + cpus, memory_reserved=node.memory_reserved + memory_mb
                )
                return


def ready(row: AppInstance, spec: dict[str, Any]) -> bool:
    """Whether an instance serves: running, and healthy when the app has checks."""
    if row.state != "running":
        return False
    return not spec.get("healthChecks") or row.health == "healthy"


def stop(row: AppInstance, spec: dict[str, Any] | None, reason: str, jobs: Jobs) -> None:
    """The manager no longer wants ``row``: STOP_INSTANCE to its node (the row goes when it reports the stop)."""
    if row.node_id is None:  # its node was deleted: nothing to tell
        AppInstance.delete().where(AppInstance.id == row.id).execute()
        return
    AppInstance.update(desired=STOP, reason=reason, updated_at=utcnow()).where(AppInstance.id == row.id).execute()
    row.desired = STOP
    jobs.stops.append((row.node_id, stop_payload(row.app_id, row.id, spec, reason)))


def _scale_down_order(row: AppInstance, spec: dict[str, Any], per_node: Counter[str | None]) -> tuple[int, int, float]:
    # Lost first, then not serving (or unhealthy), then from the nodes holding the most (the spread is kept),
    # then the newest.
    rank = 0 if row.state == LOST else (1 if not ready(row, spec) or row.health == "unhealthy" else 2)
    return rank, -per_node[row.node_id], -row.created_at.timestamp()


def reconcile(app: App, fleet: Fleet, actor: str, check_moves: bool = True) -> Jobs:
    """One pass over ``app`` (see the module's rules); sets ``app.settled`` and its shortfall."""
    spec = spec_of(app)
    jobs = Jobs()
    rows = list(
        AppInstance.select()
        .where(AppInstance.app == app.name, AppInstance.desired == RUN)
        .order_by(AppInstance.created_at, AppInstance.id)
    )
    if app.desired == STOPPED:
        for row in rows:
            stop(row, spec, "app stopped", jobs)
        _settle(app, True, None)
        return jobs
    step = _Pass(app, spec, fleet, actor, jobs)
    rows = step.drop_lost(rows)
    if check_moves:
        rows = step.drop_moved(rows)
    holds, shortfall = step.converge(rows)
    # Short for want of room is settled too: no tick can change that, the duties' periodic look at every app
    # (upkeep.RECHECK_SECONDS) places what a new or changed node makes room for.
    _settle(app, holds and not step.waiting_lost, shortfall)
    return jobs


@dataclasses.dataclass
class _Pass:
    """One reconcile pass over an app that runs: what it stops and places goes to ``jobs``."""

    app: App
    spec: dict[str, Any]
    fleet: Fleet
    actor: str
    jobs: Jobs
    causes: list[str] = dataclasses.field(default_factory=list)
    """Why the next placements happen, oldest first: what each new instance replaces."""
    waiting_lost: bool = False
    """An instance is lost but not for ``unreachableSeconds`` yet: the app is not settled."""

    def drop_lost(self, rows: list[AppInstance]) -> list[AppInstance]:
        """Replace the instances lost for ``unreachableSeconds``; returns those kept."""
        now = utcnow()
        kept: list[AppInstance] = []
        for row in rows:
            if row.state == LOST:
                lost_for = (now - (row.lost_at or now)).total_seconds()
                if lost_for >= float(self.spec.get("unreachableSeconds") or 0.0):
                    where = row.hostname or row.node_id
                    self._replace(
                        row, "lost: replaced", f"replaces instance {row.id}, lost with its node {where}", "lost"
                    )
                    continue
                self.waiting_lost = True
            kept.append(row)
        return kept

    def drop_moved(self, rows: list[AppInstance]) -> list[AppInstance]:
        """Move the instances on nodes the app's nodeQuery no longer selects; returns those kept."""
        selected = self.fleet.matching(self.spec["nodeQuery"])
        kept: list[AppInstance] = []
        for row in rows:
            if row.state != LOST and row.node_id not in selected:
                cause = f"replaces instance {row.id}: node {row.hostname or row.node_id} stopped matching"
                self._replace(row, "moved: its node no longer matches nodeQuery", cause, "no match")
                continue
            kept.append(row)
        return kept

    def _replace(self, row: AppInstance, reason: str, cause: str, why: str) -> None:
        stop(row, self.spec, reason, self.jobs)
        self.causes.append(cause)
        audit.record(self.actor, "app.reschedule", self.app.name, {"instance": row.id, "node": row.node_id, "why": why})

    def converge(self, rows: list[AppInstance]) -> tuple[bool, dict[str, Any] | None]:
        """Roll the instances to the app's version, or scale them to its count. Returns whether they now hold
        the count of that version (no old one left, none over) and the shortfall of what could not be placed."""
        app, spec = self.app, self.spec
        count = int(spec["instances"])
        current = [row for row in rows if row.version == app.version]
        old = [row for row in rows if row.version != app.version]
        if old:
            return self._roll(rows, current, old, count)
        if len(current) > count:
            per_node = Counter(row.node_id for row in current)
            for _ in range(len(current) - count):
                row = sorted(current, key=lambda row: _scale_down_order(row, spec, per_node))[0]
                stop(row, spec, "scaled down", self.jobs)
                current.remove(row)
                per_node[row.node_id] -= 1
            return True, None
        if len(current) < count:
            short = f"the app had {len(current)} of its {count} instances"
            return True, place(app, spec, rows, count - len(current), self.fleet, self.jobs, self.causes, short)
        return True, None

    def _roll(
        self, rows: list[AppInstance], current: list[AppInstance], old: list[AppInstance], count: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """One step of a rolling update (the module's rules), as ``converge`` answers."""
        app, spec = self.app, self.spec
        replaced = f"replaced by version {app.version}"
        if len(current) >= count:
            for row in old:
                stop(row, spec, replaced, self.jobs)
            return len(current) <= count, None
        if any(not ready(row, spec) for row in current):
            return False, None  # the new one must serve before the next old one stops
        if len(rows) > count:
            per_node = Counter(row.node_id for row in rows)
            worst = sorted(old, key=lambda row: _scale_down_order(row, spec, per_node))[0]
            stop(worst, spec, replaced, self.jobs)
            return False, None
        if _stopping(app.name):
            return False, None  # wait for the node to confirm: the stopped one's room (and ports) are not free yet
        return False, place(app, spec, rows, 1, self.fleet, self.jobs, [f"rolling update to version {app.version}"])


def _stopping(name: str) -> bool:
    """Whether an instance of the app was told to stop and its node (online) has not confirmed it yet."""
    query = AppInstance.select(AppInstance.id).where(
        AppInstance.app == name, AppInstance.desired == STOP, AppInstance.state != LOST
    )
    return query.exists()


def _settle(app: App, settled: bool, shortfall: dict[str, Any] | None) -> None:
    text = json.dumps(shortfall) if shortfall else ""
    if app.settled != settled or app.shortfall != text:
        App.update(settled=settled, shortfall=text).where(App.name == app.name).execute()
        if text and not app.shortfall:  # becoming short; not again while it stays short
            alerts.raise_alert(alerts.APP_SHORT, app=app.name, **(shortfall or {}))
        app.settled, app.shortfall = settled, text


def place(
    app: App,
    spec: dict[str, Any],
    rows: Iterable[AppInstance],
    wanted: int,
    fleet: Fleet,
    jobs: Jobs,
    causes: list[str],
    short: str = "",
) -> dict[str, Any] | None:
    """Place ``wanted`` new instances of the app's version; returns the shortfall (None when all were placed).

    Each new instance keeps why it exists and why on its node (``placed_because``): the first of ``causes``
    not yet used (else ``short``), and the rule that chose the node, so the app says at every moment why each
    instance is where it is."""
    causes = list(causes)
    cpus, memory = resources(spec)
    counts = Counter(row.node_id for row in rows if row.node_id)
    demand = Demand(
        component_id=app.name,
        cpu_cores=cpus,
        memory_mb=memory,
        distinct_nodes=True,
        only_nodes=fleet.matching(spec["nodeQuery"]),
    )
    secret = secret_of(app)  # decrypted once for every instance placed here
    remaining, level = wanted, 1
    reasons: list[str] = []
    created: list[dict[str, Any]] = []
    while remaining > 0:
        held = {node_id: (app.name,) for node_id, n in counts.items() if n >= level}
        result = engine.plan(fleet.nodes(), [dataclasses.replace(demand, count=remaining)], held=held)
        for placement in result.placements:
            cause = causes.pop(0) if causes else short
            where = (
                f"node {placement.hostname} matches nodeQuery {spec['nodeQuery']!r}, fits resAlloc and held "
                f"{counts[placement.node_id]} of the app's instances (placement spreads them)"
            )
            instance_id = new_instance_id(app.name)
            because = f"{cause}; {where}" if cause else where
            created.append(_instance_row(app, instance_id, placement, because, (cpus, memory)))
            fleet.take(placement.node_id, cpus, memory)
            counts[placement.node_id] += 1
            jobs.runs.append((placement.node_id, run_payload(app.name, instance_id, app.version, spec, secret)))
            logger.info("app %s: instance %s placed on node %s", app.name, instance_id, placement.node_id)
        remaining -= len(result.placements)
        if not result.placements and not held:  # every node was open to it: nothing more fits anywhere
            reasons = result.rejections.get(app.name, [])
            break
        level += 1
    # One statement per batch, not one per instance: a 100-instance app's rows were a fifth of its POST.
    for batch in chunked(created, INSERT_BATCH):
        AppInstance.insert_many(batch).execute()
    if remaining <= 0:
        return None
    return {"missing": remaining, "reasons": reasons}


def _instance_row(
    app: App, instance_id: str, placement: Placement, because: str, size: tuple[float, int]
) -> dict[str, Any]:
    """The AppInstance row of a new placement (inserted in batches by ``place``)."""
    cpus, memory = size
    return {
        "placed_because": because,
        "id": instance_id,
        "app": app.name,
        "version": app.version,
        "node": placement.node_id,
        "hostname": placement.hostname,
        "cpus": cpus,
        "mem_mb": memory,
        "desired": RUN,
        "state": "pending",
        "health": "unknown",
    }
