"""The duties' side of apps: instances on nodes gone offline read lost; apps with work are reconciled; runs
that went unanswered are sent again.

Cheap at 10,000 nodes: each tick looks only at the apps not settled (short, over, rolling, lost instances
waiting out unreachableSeconds); every RECHECK_SECONDS all running apps are looked at once more, with one read
of the nodes shared by all of them, so a node that starts to match a query (a new node, changed labels or tags)
gets the instances an app is short of, and an instance on a node that stopped matching moves.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis

from manager_api import db
from manager_api.models import App, AppInstance, Node, utcnow
from manager_api.services import audit
from manager_api.services.apps.reconcile import Fleet, reconcile
from manager_api.services.apps.specs import run_payload, secret_of, spec_of
from manager_api.services.apps.state import DUTIES, ENDED, LOST, PENDING, RUN, RUNNING, Jobs
from manager_api.services.nodes import revision, snapshot
from shared.states import NodeStatus

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 10.0
"""Seconds between two looks at every running app (new matching nodes, nodes that stopped matching), when the
nodes changed since the last look."""

FORCED_RECHECK_SECONDS = 300.0
"""Every running app is looked at this often even when no node row changed (live load, a missed change)."""


class Recheck:
    """When the duties look at every running app: every RECHECK_SECONDS when a node row changed (a join,
    new facts or tags, labels, online/offline, forgotten), and every FORCED_RECHECK_SECONDS anyway.

    Matching every app's query against every node's document costs apps x nodes; at 10,000 nodes that is
    worth doing only when the nodes changed. What changed is told by the node revision (services.nodes.revision:
    bumped by the database on any write of a column but status and last_seen, a column added later included)
    and the status column, read raw; reading and hashing every row whole every RECHECK_SECONDS cost the idle
    duties about 0.3 s of CPU each time at 10,000 nodes. Where no trigger keeps the revision, the rows are read
    whole as before.
    """

    def __init__(self) -> None:
        self._fingerprint: int | None = None
        self._next = 0.0
        self._forced = 0.0

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + RECHECK_SECONDS
        fingerprint = _nodes_fingerprint()
        if fingerprint == self._fingerprint and now < self._forced:
            return False
        self._fingerprint, self._forced = fingerprint, now + FORCED_RECHECK_SECONDS
        return True


def _nodes_fingerprint() -> int:
    """A hash of every node column but last_seen (which liveness rewrites about once a minute per node)."""
    rev = revision.current()
    if rev is None:
        columns = [field for field in Node._meta.sorted_fields if field.name != "last_seen"]
        return hash(tuple(Node.select(*columns).order_by(Node.id).tuples()))
    # The revision stands for every column but status and last_seen; status is read as it is stored.
    sql, params = Node.select(Node.id, Node.status).order_by(Node.id).sql()
    return hash((rev, tuple(db.database.execute_sql(sql, params).fetchall())))


def mark_lost(redis: Redis, offline_after_intervals: int) -> int:
    """Every wanted instance whose node is offline (persisted status, confirmed by its heartbeat) reads lost,
    and its app has work; returns how many."""
    rows = list(
        AppInstance.select(AppInstance.id, AppInstance.node, AppInstance.app)
        .join(Node)
        .where(
            AppInstance.desired == RUN,
            AppInstance.state.not_in([LOST, *ENDED]),
            Node.status == int(NodeStatus.OFFLINE),
        )
    )
    if not rows:
        return 0
    live = snapshot.read(redis, {row.node_id for row in rows if row.node_id}, offline_after_intervals)
    rows = [row for row in rows if row.node_id and not live.is_online(row.node_id)]
    if not rows:
        return 0
    with db.write_transaction():
        now = utcnow()
        for row in rows:
            changed = (
                AppInstance.update(state=LOST, health="unknown", lost_at=now, updated_at=now)
                .where(AppInstance.id == row.id, AppInstance.state != LOST, AppInstance.desired == RUN)
                .execute()
            )
            if changed:
                App.update(settled=False).where(App.name == row.app_id).execute()
                audit.record(DUTIES, "app.instance.lost", row.app_id, {"instance": row.id, "node": row.node_id})
                logger.warning("app %s instance %s: node %s offline, lost", row.app_id, row.id, row.node_id)
    return len(rows)


def reconcile_apps(redis: Redis, offline_after_intervals: int, everything: bool) -> Jobs:
    """Reconcile the apps not settled (every running app too when ``everything``), one shared node read."""
    query = App.select(App.name)
    if not everything:
        query = query.where(App.settled == False)  # noqa: E712 (peewee builds SQL from ==)
    else:
        query = query.where((App.settled == False) | (App.desired == RUNNING))  # noqa: E712
    names = [row.name for row in query]
    jobs = Jobs()
    if not names:
        return jobs
    fleet = Fleet(redis, offline_after_intervals)
    for name in names:
        with db.write_transaction():
            app = App.get_or_none(App.name == name)
            if app is not None:
                # Whether nodes stopped matching is looked at on the periodic pass: it reads every node.
                jobs.extend(reconcile(app, fleet, DUTIES, check_moves=everything))
    return jobs


def resend_overdue(resend_seconds: float) -> Jobs:
    """RUN_INSTANCE again for instances still pending ``resend_seconds`` after it was sent (a job lost in a
    Redis failover, or a node whose worker was busy): the same instance id, so an agent that has it ignores it."""
    cutoff = utcnow() - timedelta(seconds=resend_seconds)
    rows = list(
        AppInstance.select().where(
            AppInstance.desired == RUN, AppInstance.state == PENDING, AppInstance.sent_at < cutoff
        )
    )
    jobs = Jobs()
    if not rows:
        return jobs
    with db.write_transaction():
        for row in rows:
            app = App.get_or_none(App.name == row.app_id)
            if app is None or row.node_id is None:
                continue
            AppInstance.update(sent_at=utcnow()).where(AppInstance.id == row.id).execute()
            jobs.runs.append((row.node_id, run_payload(app.name, row.id, row.version, spec_of(app), secret_of(app))))
    return jobs
