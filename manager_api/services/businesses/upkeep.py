"""The duties' side of businesses: components on a node gone offline fail; deploys and stops that went
unanswered are sent again; old usage samples go."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from redis import Redis

from manager_api import db
from manager_api.models import Business, BusinessComponent, ComponentMetric, Node, utcnow
from manager_api.services.businesses.specs import components_of, deploy_payload
from manager_api.services.businesses.state import (
    ENDED,
    REMOVED,
    RUNNING,
    Jobs,
    grace_of,
    offline_reason,
    recompute,
    record_transition,
    stop_payload,
)
from manager_api.services.nodes import snapshot
from shared.states import ComponentState, NodeStatus

logger = logging.getLogger(__name__)

ACTOR = "duties"
PRUNE_CHUNK = 5000
"""Metric rows deleted per statement, so the write lock is never held long."""


def fail_components_on_offline_nodes(redis: Redis, offline_after_intervals: int, grace_default: float) -> Jobs:
    """Every component not yet ended whose node is offline: failed "node X offline" when it should run,
    ended when it was being stopped (its stop waits in the node's queue), gone when an update dropped it.
    Returns the rollback stops of rollouts this failed.

    Candidates come from the persisted Node.status, then the live heartbeats confirm: a node that joined
    after the last status refresh still reads offline in the database for up to a tick.
    """
    rows = list(
        BusinessComponent.select(BusinessComponent, Node.id, Node.hostname)
        .join(Node)
        .where(
            BusinessComponent.status.not_in(list(ENDED)),
            Node.status == int(NodeStatus.OFFLINE),
        )
    )
    if not rows:
        return Jobs()
    live = snapshot.read(redis, {row.node_id for row in rows}, offline_after_intervals)
    rows = [row for row in rows if not live.is_online(row.node_id)]
    if not rows:
        return Jobs()
    jobs = Jobs()
    touched: set[str] = set()
    with db.write_transaction():
        now = utcnow()
        for row in rows:
            reason = offline_reason(row.node.hostname or row.node_id)
            # Re-checked in the write lock: a report may have ended it meanwhile.
            current = BusinessComponent.get_or_none(BusinessComponent.id == row.id)
            if current is None or current.status in ENDED or current.generation != row.generation:
                continue
            if current.desired == REMOVED:
                BusinessComponent.delete().where(BusinessComponent.id == row.id).execute()
                to_status = REMOVED
            else:
                to_status = ComponentState.FAILED.value
                BusinessComponent.update(status=to_status, error_message=reason, updated_at=now).where(
                    BusinessComponent.id == row.id
                ).execute()
            record_transition(current, to_status, reason, ACTOR)
            touched.add(current.business_id)
            log = logger.warning if current.desired == RUNNING else logger.info
            log(
                "business %s component %s gen %s: %s -> %s: %s",
                current.business_id,
                current.component_id,
                current.generation,
                current.status,
                to_status,
                reason,
            )
        for business_id in sorted(touched):
            jobs.extend(recompute(business_id, ACTOR, grace_default))
    return jobs


class Resender:
    """Sends again, at most once every ``after_seconds``, the jobs of components that went unanswered that long
    on an online node: a deploy still pending, a stop not yet ended.

    A job can be lost after its commit: Redis failed just then (a rollback decided by the duties), or a Redis
    without persistence restarted with the queues. The agent's job functions are idempotent (a deploy of the
    generation it holds and a stop of what already stopped change nothing), so sending again is safe; it is
    what a reconciling scheduler (Nomad, Kubernetes) does with a desired state not yet reached.
    """

    def __init__(self, after_seconds: float) -> None:
        self.after_seconds = after_seconds
        self._sent: dict[tuple[int, int, str], float] = {}  # (row id, generation, kind) -> monotonic time

    def overdue(self, grace_default: float) -> Jobs:
        """The jobs to send again now (it only reads the database)."""
        cutoff = utcnow() - timedelta(seconds=self.after_seconds)
        pending_deploy = (BusinessComponent.desired == RUNNING) & (
            BusinessComponent.status == ComponentState.PENDING.value
        )
        unfinished_stop = (BusinessComponent.desired != RUNNING) & BusinessComponent.status.not_in(list(ENDED))
        rows = list(
            BusinessComponent.select(BusinessComponent, Business.business_id, Business.spec)
            .join(Business)
            .switch(BusinessComponent)
            .join(Node)
            .where(
                BusinessComponent.updated_at < cutoff,
                Node.status == int(NodeStatus.ONLINE),
                pending_deploy | unfinished_stop,
            )
        )
        now = time.monotonic()
        jobs = Jobs()
        seen = set()
        for row in rows:
            kind = "deploy" if row.desired == RUNNING else "stop"
            key = (row.id, row.generation, kind)
            seen.add(key)
            if now - self._sent.get(key, -float("inf")) < self.after_seconds:
                continue
            if kind == "deploy":
                spec = components_of(row.business.spec).get(row.component_id)
                if spec is None:
                    continue  # an update replaced the spec meanwhile: it sent its own jobs
                jobs.deploys.append(
                    (
                        row.node_id,
                        deploy_payload(
                            row.business_id, spec, row.generation, grace_default, row.secret_environment_variables
                        ),
                    )
                )
            else:
                jobs.stops.append(
                    (row.node_id, stop_payload(row, grace_of(row.business, row.component_id, grace_default)))
                )
            self._sent[key] = now
            logger.warning(
                "business %s component %s gen %s on node %s: %s unanswered for %.0f s (%s), sending it again",
                row.business_id,
                row.component_id,
                row.generation,
                row.node_id,
                kind,
                self.after_seconds,
                row.status,
            )
        self._sent = {key: at for key, at in self._sent.items() if key in seen}
        return jobs


def prune_metrics(retention_hours: float) -> int:
    """Delete usage samples older than the retention; returns how many went."""
    cutoff = utcnow() - timedelta(hours=retention_hours)
    total = 0
    while True:
        with db.write_transaction():
            ids = [
                pk
                for (pk,) in ComponentMetric.select(ComponentMetric.id)
                .where(ComponentMetric.timestamp < cutoff)
                .limit(PRUNE_CHUNK)
                .tuples()
            ]
            if ids:
                ComponentMetric.delete().where(ComponentMetric.id.in_(ids)).execute()
        total += len(ids)
        if len(ids) < PRUNE_CHUNK:
            break
    if total:
        logger.info("component metrics pruned: %d samples older than %s", total, cutoff.isoformat())
    return total
