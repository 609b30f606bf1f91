"""Applying the agents' component reports (kind shared.report_streams.COMPONENT) to the database, idempotently.

Per report: a generation older than the row's is ignored (the agent is still winding down a replaced
one); the row takes the reported state, ids and usage; a usage sample becomes a ComponentMetric row at
most once per ``metric_every`` seconds per component; a dropped component's row goes once it stopped.
Each business touched is recomputed once per batch, and a failed rollout's rollback stops are returned
for the caller to send after the commit.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from manager_api.models import BusinessComponent, ComponentMetric, utcnow
from manager_api.services.businesses.state import (
    ENDED,
    REMOVED,
    RUNNING,
    Jobs,
    failed_by_manager,
    recompute,
    record_transition,
)
from manager_api.services.report_batches import Report, ReportKind
from manager_api.services.serialize import from_unix
from shared import acks
from shared.states import ComponentState

logger = logging.getLogger(__name__)

ACTOR = "duties"


def report_kind(metric_every: float, grace_default: float) -> ReportKind[bool, Jobs]:
    """Component reports as the duties apply them in batches (services.report_batches); settled: rollback stops."""

    def recompute_touched(stored: list[tuple[Report, bool]]) -> Jobs:
        # Each business touched recomputed once per batch, in a stable order.
        jobs = Jobs()
        for business_id in sorted({report["business_id"] for report, changed in stored if changed}):
            jobs.extend(recompute(business_id, ACTOR, grace_default))
        return jobs

    return ReportKind(
        what="component report",
        about=lambda report: f"business {report.get('business_id')} component {report.get('component_id')}",
        store=lambda report: _apply(report, metric_every),
        settle=recompute_touched,
        ack_kind=acks.COMPONENT,
        # Final states (failed, stopped), applied or not: their nodes stop sending them again.
        ack_name=lambda report: None if ComponentState(report["status"]).active else acks.component_name(report),
    )


def _new_status(row: BusinessComponent, reported: str) -> str | None:
    """The row's next status for a report of its own generation, or None to keep it."""
    current = row.status
    if current == ComponentState.STOPPED.value:
        return None  # a stopped generation never comes back
    if current == ComponentState.FAILED.value:
        # The agent's word beats the manager's guess that a late node was lost.
        revived = failed_by_manager(row.error_message) and row.desired == RUNNING and reported not in ENDED
        return reported if revived else None
    if row.desired != RUNNING:
        # Stopping: only the end counts; "running" on the way only refreshes ids and usage.
        return reported if reported in ENDED else None
    return reported if reported != current else None


def _apply(report: Report, metric_every: float) -> bool:
    """Store one report; returns whether the component's status changed (its business is then recomputed)."""
    row = _row_of(report)
    if row is None:
        return False
    if row.desired == REMOVED and report["status"] in ENDED:
        _remove(row, report)
        return True
    now = utcnow()
    new = _new_status(row, report["status"])
    changes = _changes(row, new, report)
    usage = report.get("resource_usage")
    if usage is not None and (new or row.status) not in ENDED:
        changes.update(
            {
                BusinessComponent.cpu_percent: usage.get("cpu_percent"),
                BusinessComponent.memory_used_mb: usage.get("memory_mb"),
                BusinessComponent.gpu_percent: usage.get("gpu_percent"),
                BusinessComponent.usage_at: now,
            }
        )
        _store_metric(row.id, report["timestamp"], usage, metric_every)
    if not changes:
        return False
    changes[BusinessComponent.updated_at] = now
    BusinessComponent.update(changes).where(BusinessComponent.id == row.id).execute()
    if new is None:
        return False
    record_transition(row, new, report.get("error_message"), f"node:{report['node_id']}")
    _log_transition(row, new, report)
    return True


def _row_of(report: Report) -> BusinessComponent | None:
    """The component row the report is about, or None (logged) when there is none or it holds another
    generation or node (the agent is still winding down a replaced one)."""
    business_id, component_id, node_id = report["business_id"], report["component_id"], report["node_id"]
    generation = report["generation"]
    row = BusinessComponent.get_or_none(
        (BusinessComponent.business == business_id) & (BusinessComponent.component_id == component_id)
    )
    if row is None:
        logger.info(
            "report for business %s component %s from node %s matches no component; ignored",
            business_id,
            component_id,
            node_id,
        )
        return None
    if generation != row.generation or node_id != row.node_id:
        logger.debug(
            "business %s component %s: report of gen %s from node %s ignored (row holds gen %s on node %s)",
            business_id,
            component_id,
            generation,
            node_id,
            row.generation,
            row.node_id,
        )
        return None
    found: BusinessComponent = row
    return found


def _remove(row: BusinessComponent, report: Report) -> None:
    """A dropped component's row goes once its node reports it ended."""
    BusinessComponent.delete().where(BusinessComponent.id == row.id).execute()
    record_transition(row, REMOVED, "update: removed", ACTOR)
    logger.info(
        "business %s component %s gen %s on node %s: %s, removed",
        report["business_id"],
        report["component_id"],
        report["generation"],
        report["node_id"],
        report["status"],
    )


def _changes(row: BusinessComponent, new: str | None, report: Report) -> dict[Any, Any]:
    """The columns a report of the row's own generation changes, but its usage (empty: none)."""
    changes: dict[Any, Any] = {}
    for column, key in (
        (BusinessComponent.container_id, "container_id"),
        (BusinessComponent.pid, "pid"),
        (BusinessComponent.exit_code, "exit_code"),
    ):
        if report.get(key) is not None and report[key] != getattr(row, key):
            changes[column] = report[key]
    if new is not None:
        changes[BusinessComponent.status] = new
        if new == ComponentState.FAILED.value or report.get("error_message"):
            changes[BusinessComponent.error_message] = report.get("error_message")
        elif new == ComponentState.RUNNING.value:
            changes[BusinessComponent.error_message] = None
        if new == ComponentState.RUNNING.value and row.started_at is None:
            changes[BusinessComponent.started_at] = from_unix(report["timestamp"])
    return changes


def _log_transition(row: BusinessComponent, new: str, report: Report) -> None:
    """INFO for a status change, WARNING for a failure; ``row`` still holds the status before it."""
    log = logger.warning if new == ComponentState.FAILED.value else logger.info
    log(
        "business %s component %s gen %s on node %s: %s -> %s (pid %s, container %s%s)",
        report["business_id"],
        report["component_id"],
        report["generation"],
        report["node_id"],
        row.status,
        new,
        report.get("pid"),
        (report.get("container_id") or "-")[:12],
        f", error: {report['error_message']}" if report.get("error_message") else "",
    )


def _store_metric(component_pk: int, timestamp: float, usage: dict[str, Any], every: float) -> None:
    """One ComponentMetric row, unless this component got one less than ``every`` seconds ago.

    The sample keeps the agent's time, but never one ahead of the manager's (a clock far ahead would
    otherwise outlive the retention).
    """
    at = from_unix(min(timestamp, time.time()))
    last = (
        ComponentMetric.select(ComponentMetric.timestamp)
        .where(ComponentMetric.component == component_pk)
        .order_by(ComponentMetric.timestamp.desc())
        .first()
    )
    if last is not None and abs((at - last.timestamp).total_seconds()) < every:
        return
    ComponentMetric.create(
        component=component_pk,
        timestamp=at,
        cpu_percent=float(usage.get("cpu_percent") or 0.0),
        memory_mb=float(usage.get("memory_mb") or 0.0),
        gpu_percent=usage.get("gpu_percent"),
    )
