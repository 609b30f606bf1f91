"""The duties' side of businesses: components on a node gone offline fail; old usage samples go."""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis

from shared import heartbeat
from shared.states import ComponentState, NodeStatus

from .. import db
from ..models import BusinessComponent, ComponentMetric, Node, utcnow
from .business_state import ENDED, REMOVED, RUNNING, Jobs, offline_reason, recompute, record_transition

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
    now_ts, beats = heartbeat.read_summaries(redis)
    rows = [
        row
        for row in rows
        if not ((beat := beats.get(row.node_id)) is not None and beat.online(now_ts, offline_after_intervals))
    ]
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
