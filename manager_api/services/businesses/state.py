"""A business's state derived from its components (document 001 §8), its history (BusinessHistory rows: one
per change), and the rollback of a rollout that failed.

``derive`` is pure; ``recompute`` stores its answer and returns the stop jobs a rollback needs (sent by
the caller once the transaction is committed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from manager_api.models import Business, BusinessComponent, BusinessHistory, utcnow
from manager_api.services import audit
from manager_api.services.alerts import events as alerts
from shared.states import BusinessState, ComponentState

logger = logging.getLogger(__name__)

RUNNING = "running"
STOPPED = "stopped"
REMOVED = "removed"
"""Values of BusinessComponent.desired."""

ENDED = frozenset({ComponentState.FAILED.value, ComponentState.STOPPED.value})
"""Component states in which nothing runs (or is about to) for the row's generation."""

ROLLOUT_STATES = frozenset({BusinessState.DEPLOYING.value, BusinessState.UPDATING.value})
"""Business states of a rollout in progress: a failure then rolls back when asked to."""

OFFLINE_PREFIX = "node "
OFFLINE_SUFFIX = " offline"
"""Reasons the manager writes on a component whose node went offline: "node web-01 offline"."""


def offline_reason(hostname: str) -> str:
    """The error a component gets when the duties find its node offline."""
    return f"{OFFLINE_PREFIX}{hostname}{OFFLINE_SUFFIX}"


def failed_by_manager(error_message: str | None) -> bool:
    """Whether a failure was the manager's guess (node offline), which a later report of the same
    generation from the node may contradict, rather than the agent's word."""
    return (
        error_message is not None
        and error_message.startswith(OFFLINE_PREFIX)
        and error_message.endswith(OFFLINE_SUFFIX)
    )


@dataclass
class Jobs:
    """Work for the agents, collected inside a transaction and sent after the commit."""

    deploys: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (node id, ComponentSpec)
    stops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (node id, StopComponent)

    def extend(self, other: Jobs) -> None:
        self.deploys.extend(other.deploys)
        self.stops.extend(other.stops)

    def __bool__(self) -> bool:
        return bool(self.deploys or self.stops)


def derive(current: str, components: Sequence[tuple[str, str]]) -> BusinessState:
    """What a business in ``current`` reads given its components' (status, desired).

    - stopping/stopped: stopped once every component ended;
    - a component meant to run failed: failed, and failed stays until a new rollout, unless nothing was
      rolled back and every component runs again (a node that was only late came back);
    - every component meant to run runs and no dropped one is still stopping: running;
    - otherwise the business keeps its state (deploying, updating).
    """
    state = BusinessState(current)
    if state in (BusinessState.STOPPING, BusinessState.STOPPED):
        ended = all(status in ENDED for status, _ in components)
        return BusinessState.STOPPED if ended else BusinessState.STOPPING
    wanted = [status for status, desired in components if desired == RUNNING]
    all_running = bool(wanted) and all(status == ComponentState.RUNNING.value for status in wanted)
    settled = not any(desired != RUNNING for _, desired in components)
    if any(status == ComponentState.FAILED.value for status in wanted):
        return BusinessState.FAILED
    if state == BusinessState.FAILED:
        return BusinessState.RUNNING if all_running and settled else BusinessState.FAILED
    if all_running and settled:
        return BusinessState.RUNNING
    return state


def record_history(
    business_id: str,
    to_status: str,
    *,
    component_id: str | None = None,
    generation: int | None = None,
    from_status: str | None = None,
    reason: str | None = None,
    actor: str = "",
) -> None:
    """Append one transition to the business's history (inside the caller's transaction)."""
    BusinessHistory.create(
        business=business_id,
        component_id=component_id,
        generation=generation,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
        actor=actor,
        at=utcnow(),
    )


def record_transition(row: BusinessComponent, to_status: str, reason: str | None, actor: str) -> None:
    """record_history of ``row`` leaving the status it has (as read before the caller changed it)."""
    record_history(
        row.business_id,
        to_status,
        component_id=row.component_id,
        generation=row.generation,
        from_status=row.status,
        reason=reason,
        actor=actor,
    )


def set_status(business: Business, new: BusinessState | str, actor: str, reason: str | None = None) -> None:
    """Move a business to ``new`` with a history entry, an audit entry and a log line (no-op when unchanged)."""
    new_value = BusinessState(new).value
    old = business.status
    if old == new_value and reason == business.message:
        return
    now = utcnow()
    message = reason if new_value == BusinessState.FAILED.value else None
    Business.update(status=new_value, message=message, updated_at=now).where(
        Business.business_id == business.business_id
    ).execute()
    business.status, business.message, business.updated_at = new_value, message, now
    if old == new_value:
        return
    record_history(business.business_id, new_value, from_status=old, reason=reason, actor=actor)
    audit.record(actor, f"business.{new_value}", business.business_id, {"from": old, "reason": reason})
    if new_value == BusinessState.FAILED.value:
        alerts.raise_alert(alerts.BUSINESS_FAILED, business_id=business.business_id, reason=reason, by=actor)
    log = logger.warning if new_value == BusinessState.FAILED.value else logger.info
    log("business %s: %s -> %s%s (by %s)", business.business_id, old, new_value, f": {reason}" if reason else "", actor)


def stop_payload(row: BusinessComponent, grace_seconds: float) -> dict[str, Any]:
    """STOP_COMPONENT body for the row's current generation (an agent that never knew it answers stopped)."""
    return {
        "business_id": row.business_id,
        "component_id": row.component_id,
        "container_id": row.container_id,
        "generation": row.generation,
        "grace_seconds": grace_seconds,
    }


def grace_of(business: Business, component_id: str, default: float) -> float:
    """The component's stop_grace_seconds from the business spec, else ``default``."""
    try:
        for component in json.loads(business.spec or "{}").get("components", []):
            if component.get("component_id") == component_id and component.get("stop_grace_seconds") is not None:
                return float(component["stop_grace_seconds"])
    except (ValueError, AttributeError, TypeError):
        pass
    return default


def _rollout_component_ids(business_id: str) -> set[str]:
    """Components put to pending by the business's latest rollout (deploy, restart or update)."""
    start = (
        BusinessHistory.select(BusinessHistory.id)
        .where(
            BusinessHistory.business == business_id,
            BusinessHistory.component_id.is_null(),
            BusinessHistory.to_status.in_(list(ROLLOUT_STATES)),
        )
        .order_by(BusinessHistory.id.desc())
        .scalar()
    )
    if start is None:
        return set()
    rows = BusinessHistory.select(BusinessHistory.component_id).where(
        BusinessHistory.business == business_id,
        BusinessHistory.id > start,
        BusinessHistory.component_id.is_null(False),
        BusinessHistory.to_status == ComponentState.PENDING.value,
    )
    return {cid for (cid,) in rows.tuples()}


def _rollback(business: Business, grace_default: float, actor: str) -> Jobs:
    """Stop what the failed rollout started, so nothing stays half-started."""
    jobs = Jobs()
    touched = _rollout_component_ids(business.business_id)
    rows = BusinessComponent.select().where(
        BusinessComponent.business == business.business_id,
        BusinessComponent.component_id.in_(list(touched)),
        BusinessComponent.desired == RUNNING,
    )
    now = utcnow()
    for row in rows:
        changes: dict[Any, Any] = {BusinessComponent.desired: STOPPED, BusinessComponent.updated_at: now}
        if row.status not in ENDED:
            changes[BusinessComponent.status] = ComponentState.STOPPING.value
            record_transition(row, ComponentState.STOPPING.value, "rollback", actor)
        BusinessComponent.update(changes).where(BusinessComponent.id == row.id).execute()
        if row.node_id and (row.status not in ENDED or failed_by_manager(row.error_message)):
            payload = stop_payload(row, grace_of(business, row.component_id, grace_default))
            jobs.stops.append((row.node_id, payload))
    logger.warning(
        "business %s: rollback stops %d components of the failed rollout", business.business_id, len(jobs.stops)
    )
    return jobs


def _failure_reason(business_id: str) -> str | None:
    row = (
        BusinessComponent.select(BusinessComponent.component_id, BusinessComponent.error_message)
        .where(
            BusinessComponent.business == business_id,
            BusinessComponent.status == ComponentState.FAILED.value,
        )
        .order_by(BusinessComponent.updated_at.desc())
        .tuples()
        .first()
    )
    if row is None:
        return None
    component_id, error = row
    return f"component {component_id} failed: {error or 'no reason given'}"


def recompute(business_id: str, actor: str, grace_default: float) -> Jobs:
    """Store the business's derived state (inside a write transaction); returns any rollback stops."""
    business = Business.get_or_none(Business.business_id == business_id)
    if business is None:
        return Jobs()
    rows = list(
        BusinessComponent.select(BusinessComponent.status, BusinessComponent.desired)
        .where(BusinessComponent.business == business_id)
        .tuples()
    )
    current = business.status
    new = derive(current, rows)
    jobs = Jobs()
    if new == BusinessState.FAILED and current != BusinessState.FAILED.value:
        reason = _failure_reason(business_id)
        rolling = current in ROLLOUT_STATES and business_rollback(business)
        if rolling:
            reason = f"{reason}; rolled back"
        set_status(business, new, actor, reason)
        if rolling:
            jobs = _rollback(business, grace_default, actor)
    elif new.value != current:
        set_status(business, new, actor)
    return jobs


def business_rollback(business: Business) -> bool:
    """The business's rollback_on_failure (default true)."""
    try:
        return bool(json.loads(business.spec or "{}").get("rollback_on_failure", True))
    except (ValueError, AttributeError):
        return True
