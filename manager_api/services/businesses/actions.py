"""Businesses (document 001 §5, §9): deploy, stop, restart, delete; what is sent to the agents goes after the commit.

Placement and every state live in the database, so a restarted manager loses nothing: the duties go on
applying the agents' reports (component_reports.py) and watching nodes (business_upkeep.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from peewee import fn
from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.config import Settings
from manager_api.models import Business, BusinessComponent, BusinessHistory, BusinessTombstone, ComponentMetric, utcnow
from manager_api.services import audit, dispatch
from manager_api.services.businesses.scope import check_components, check_reach
from manager_api.services.businesses.specs import (
    RUNTIME_RESET,
    components_of,
    demand,
    deploy_payload,
    row_fields,
    spec_json,
)
from manager_api.services.businesses.state import (
    ENDED,
    REMOVED,
    RUNNING,
    STOPPED,
    Jobs,
    failed_by_manager,
    grace_of,
    record_history,
    record_transition,
    set_status,
    stop_payload,
)
from manager_api.services.errors import Conflict, NotFound, ServiceError, Unavailable
from manager_api.services.placement import candidates
from manager_api.services.placement import engine as business_placement
from manager_api.services.placement.model import Candidate, Demand
from manager_api.services.placement.refusals import Plan
from shared.states import BusinessState, ComponentState

logger = logging.getLogger(__name__)

NOT_FOUND = "Business not found"
QUEUE_DOWN = "Task queue unavailable"


def error(kind: type[ServiceError], message: str, **extra: Any) -> ServiceError:
    """A ``kind`` of failure in the businesses' answer shape: {"status": "error", "message", "error", ...}."""
    return kind(message, {"status": "error", "message": message, **extra})


def get(business_id: str) -> Business:
    """The business ``business_id``, or a 404."""
    business = Business.get_or_none(Business.business_id == business_id)
    if business is None:
        raise error(NotFound, NOT_FOUND, business_id=business_id)
    return business


def generation_floor(business_id: str, component_id: str | None = None) -> int:
    """The highest generation this business id (or one component of it) ever had, 0 when none.

    A new generation must be above it: agents keep an ended generation's record for a day and take a
    deploy of a generation they hold for a redelivery, which they ignore. The history records every generation
    started (start_generation), even of a component since removed; a tombstone those of a deleted business.
    """
    started = BusinessHistory.select(fn.MAX(BusinessHistory.generation)).where(BusinessHistory.business == business_id)
    if component_id is not None:
        started = started.where(BusinessHistory.component_id == component_id)
    tombstone = BusinessTombstone.get_or_none(BusinessTombstone.business_id == business_id)
    return max(started.scalar() or 0, tombstone.generation if tombstone is not None else 0)


def refusal(plan: Plan, business_id: str | None) -> ServiceError:
    """409 naming each component that fits nowhere with how many nodes refused it for what; the answer's
    "rejections" name the most telling nodes (bounded), "rejection_summary" counts them all."""
    extra: dict[str, Any] = {"rejections": plan.rejections, "rejection_summary": plan.rejection_summary}
    if business_id:
        extra["business_id"] = business_id
    return error(Conflict, plan.refusal_text(), **extra)


def plan_json(plan: Plan) -> list[dict[str, Any]]:
    """The placements of a plan for a dry run."""
    return [
        {
            "component_id": p.component_id,
            "node_id": p.node_id,
            "hostname": p.hostname,
            "score": p.score,
            "reason": f"busiest resource {round(p.score * 100, 1)}% used after placing",
        }
        for p in plan.placements
    ]


def place(nodes: Sequence[Candidate], demands: Sequence[Demand], business_id: str | None) -> dict[str, str]:
    """component_id -> node id, or the 409 refusal."""
    plan = business_placement.plan(nodes, demands)
    if not plan.ok:
        logger.warning("business %s refused by placement: %s", business_id or "(new)", plan.refusal_text())
        raise refusal(plan, business_id)
    return {p.component_id: p.node_id for p in plan.placements}


def send(redis: Redis, jobs: Jobs) -> None:
    """Enqueue the jobs collected by a committed transaction (raises RedisError)."""
    dispatch.component_jobs(redis, jobs.deploys, jobs.stops)


def start_generation(
    business_id: str, spec: Mapping[str, Any], generation: int, node_id: str, actor: str, reason: str, grace: float
) -> tuple[str, dict[str, Any]]:
    """Record a component's new generation pending on ``node_id``; returns its DEPLOY job."""
    record_history(
        business_id,
        ComponentState.PENDING.value,
        component_id=spec["component_id"],
        generation=generation,
        reason=reason,
        actor=actor,
    )
    # The row (written just before) holds the secret env: the stored spec has none.
    row = BusinessComponent.get(
        BusinessComponent.business == business_id, BusinessComponent.component_id == spec["component_id"]
    )
    return node_id, deploy_payload(business_id, spec, generation, grace, row.secret_environment_variables)


def next_generation(
    business: Business,
    row: BusinessComponent,
    spec: Mapping[str, Any],
    node_id: str,
    jobs: Jobs,
    *,
    actor: str,
    reason: str,
    grace: float,
    stop_grace: float | None = None,
    new_spec: bool = False,
) -> bool:
    """Replace ``row`` by its next generation, pending on ``node_id`` (restart, update); True when it moved.

    A moved component's old node gets a STOP_COMPONENT (with ``stop_grace``, else the business's grace for
    it): that node may come back with the old generation. ``new_spec`` also writes the spec's fields.
    """
    old_node = row.node_id
    moved = old_node is not None and old_node != node_id and row.status != ComponentState.STOPPED.value
    if old_node is not None and moved:
        old_grace = grace_of(business, row.component_id, grace) if stop_grace is None else stop_grace
        jobs.stops.append((old_node, stop_payload(row, old_grace)))
    generation = row.generation + 1
    BusinessComponent.update(
        node=node_id,
        generation=generation,
        desired=RUNNING,
        status=ComponentState.PENDING.value,
        updated_at=utcnow(),
        **RUNTIME_RESET,
        **(row_fields(spec) if new_spec else {}),
    ).where(BusinessComponent.id == row.id).execute()
    jobs.deploys.append(start_generation(business.business_id, spec, generation, node_id, actor, reason, grace))
    return moved


# -- deploy ------------------------------------------------------------------------------------------


def deploy(redis: Redis, data: dict[str, Any], actor: str, settings: Settings, dry_run: bool = False) -> dict[str, Any]:
    """Validate (done), plan, record and send a new business; a dry run only answers the plan."""
    business_id = data.get("business_id") or uuid.uuid4().hex
    data = {**data, "business_id": business_id}
    check_components(data["components"])
    grace = settings.component_stop_grace_seconds
    with db.write_transaction():
        # In the write lock: two deploys at once each see what the other reserved.
        if Business.get_or_none(Business.business_id == business_id) is not None:
            raise error(
                Conflict,
                f"Business {business_id} already exists: update it with PUT /api/businesses/{business_id}",
                business_id=business_id,
            )
        nodes = candidates.load_nodes(redis, settings.offline_after_intervals)
        demands = [demand(c) for c in data["components"]]
        if dry_run:
            plan = business_placement.plan(nodes, demands)
            if not plan.ok:
                raise refusal(plan, business_id)
            return {"status": "success", "message": "plan only", "business_id": business_id, "plan": plan_json(plan)}
        placed = place(nodes, demands, business_id)
        now = utcnow()
        business = Business.create(
            business_id=business_id,
            business_name=data["business_name"],
            status=BusinessState.PENDING.value,
            spec=spec_json(data),
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        set_status(business, BusinessState.DEPLOYING, actor, "deploy")
        jobs = Jobs()
        first = generation_floor(business_id) + 1  # 1, unless a deleted business had this id
        for component in data["components"]:
            BusinessComponent.create(
                business=business_id,
                component_id=component["component_id"],
                node=placed[component["component_id"]],
                generation=first,
                desired=RUNNING,
                status=ComponentState.PENDING.value,
                updated_at=now,
                **row_fields(component),
            )
            node_id = placed[component["component_id"]]
            jobs.deploys.append(start_generation(business_id, component, first, node_id, actor, "deploy", grace))
        audit.record(actor, "business.create", business_id, {"name": data["business_name"], "placement": placed})
    logger.info(
        "business %s (%s) deployed by %s: %d components on %d nodes",
        business_id,
        data["business_name"],
        actor,
        len(placed),
        len(set(placed.values())),
    )
    send_rollout(redis, business_id, jobs, settings)
    return {"status": "success", "message": "deploying", "business_id": business_id}


def send_rollout(redis: Redis, business_id: str, jobs: Jobs, settings: Settings) -> None:
    """Send a rollout's jobs; when Redis refuses, its pending components fail and the caller gets 503."""
    try:
        send(redis, jobs)
    except RedisError as exc:
        logger.error("business %s: component jobs not sent: %s", business_id, exc)
        reason = f"could not enqueue the component: {exc}"
        pending = [node_payload[1]["component_id"] for node_payload in jobs.deploys]
        with db.write_transaction():
            now = utcnow()
            BusinessComponent.update(status=ComponentState.FAILED.value, error_message=reason, updated_at=now).where(
                BusinessComponent.business == business_id,
                BusinessComponent.component_id.in_(pending),
                BusinessComponent.status == ComponentState.PENDING.value,
            ).execute()
            business = get(business_id)
            set_status(business, BusinessState.FAILED, "system", reason)
        raise error(
            Unavailable, f"{QUEUE_DOWN}: the components could not be sent to their nodes", business_id=business_id
        ) from exc


# -- stop and restart --------------------------------------------------------------------------------


def stop(redis: Redis, business_id: str, actor: str, settings: Settings) -> dict[str, Any]:
    """Every component desired stopped; STOP_COMPONENT for each that may still run (again when asked again)."""
    grace = settings.component_stop_grace_seconds
    jobs = Jobs()
    with db.write_transaction():
        business = get(business_id)
        check_reach(redis, settings, business_id)
        if business.status == BusinessState.STOPPED.value:
            return {"status": "success", "message": "already stopped", "business_id": business_id}
        rows = list(BusinessComponent.select().where(BusinessComponent.business == business_id))
        now = utcnow()
        for row in rows:
            if row.node_id and row.status != ComponentState.STOPPED.value:
                jobs.stops.append((row.node_id, stop_payload(row, grace_of(business, row.component_id, grace))))
            if row.status in ENDED:
                if row.desired == RUNNING:
                    BusinessComponent.update(desired=STOPPED, updated_at=now).where(
                        BusinessComponent.id == row.id
                    ).execute()
                continue
            if row.status != ComponentState.STOPPING.value:
                record_transition(row, ComponentState.STOPPING.value, "stop", actor)
            desired = row.desired if row.desired != RUNNING else STOPPED
            BusinessComponent.update(desired=desired, status=ComponentState.STOPPING.value, updated_at=now).where(
                BusinessComponent.id == row.id
            ).execute()
        again = business.status == BusinessState.STOPPING.value
        set_status(business, BusinessState.STOPPING, actor, "stop")
        if all(row.status in ENDED for row in rows):
            set_status(business, BusinessState.STOPPED, actor, "nothing was running")
        audit.record(actor, "business.stop", business_id, {"components": len(rows), "again": again})
    logger.info("business %s: stop asked by %s (%d stop jobs)", business_id, actor, len(jobs.stops))
    try:
        send(redis, jobs)
    except RedisError as exc:
        logger.error("business %s: stop jobs not sent: %s", business_id, exc)
        raise error(
            Unavailable, f"{QUEUE_DOWN}: the stop could not be sent; try again", business_id=business_id
        ) from exc
    return {"status": "success", "message": "stopping", "business_id": business_id}


def restart(redis: Redis, business_id: str, actor: str, settings: Settings) -> dict[str, Any]:
    """A new generation of every component, on the node it was on unless that node can no longer take it."""
    grace = settings.component_stop_grace_seconds
    jobs = Jobs()
    with db.write_transaction():
        business = get(business_id)
        check_reach(redis, settings, business_id)
        specs = components_of(business.spec)
        rows = [
            row
            for row in BusinessComponent.select().where(BusinessComponent.business == business_id)
            if row.component_id in specs and row.desired != REMOVED
        ]
        nodes = candidates.load_nodes(redis, settings.offline_after_intervals, exclude_business_id=business_id)
        placed = place(nodes, [demand(specs[row.component_id], row.node_id) for row in rows], business_id)
        set_status(business, BusinessState.DEPLOYING, actor, "restart")
        moved = 0
        for row in rows:
            spec = specs[row.component_id]
            args = (business, row, spec, placed[row.component_id], jobs)
            moved += next_generation(*args, actor=actor, reason="restart", grace=grace)
        audit.record(actor, "business.restart", business_id, {"components": len(rows), "moved": moved})
    logger.info("business %s: restart by %s, %d components (%d moved)", business_id, actor, len(rows), moved)
    send_rollout(redis, business_id, jobs, settings)
    return {"status": "success", "message": "restarting", "business_id": business_id}


# -- delete ------------------------------------------------------------------------------------------


DELETABLE = (BusinessState.STOPPED.value, BusinessState.FAILED.value)
"""Business states that may be deleted, when no component may still run (_may_still_run)."""


def _may_still_run(business: Business, rows: Sequence[BusinessComponent]) -> list[str]:
    """Components of a stopped or failed business that keep it from being deleted: their records are what
    stops them.

    Stopped, every component has ended and a stop went to any node that may still run one. Failed, each
    must have ended by its node's word: one failed only because its node went offline ("node X offline")
    may still run there, and a stop leaves that node what to do when it is back.
    """
    stopped = business.status == BusinessState.STOPPED.value
    return [
        row.component_id
        for row in rows
        if row.status not in ENDED or (not stopped and row.node_id and failed_by_manager(row.error_message))
    ]


def _not_stopped(business: Business, blocking: Sequence[str] = ()) -> ServiceError:
    stop = f"stop it first: POST /api/businesses/{business.business_id}/stop"
    if blocking:
        message = (
            f"Business {business.business_id} is {business.status} but components {', '.join(blocking)} may "
            f"still run (not ended, or their node went offline with them): {stop}"
        )
    else:
        message = f"Business {business.business_id} is {business.status}: {stop}"
    return error(Conflict, message, business_id=business.business_id, business_status=business.status)


def delete(business_id: str, actor: str) -> dict[str, Any]:
    """Delete a stopped business (or a failed one with nothing left running) with its components and history."""
    with db.write_transaction():
        business = get(business_id)
        if business.status not in DELETABLE:
            raise _not_stopped(business)
        rows = list(BusinessComponent.select().where(BusinessComponent.business == business_id))
        blocking = _may_still_run(business, rows)
        if blocking:
            raise _not_stopped(business, blocking)
        floor = max([generation_floor(business_id), *(row.generation for row in rows)])
        # Children first: the database would cascade, but not one made without foreign keys enforced.
        ComponentMetric.delete().where(ComponentMetric.component.in_([row.id for row in rows])).execute()
        BusinessHistory.delete().where(BusinessHistory.business == business_id).execute()
        BusinessComponent.delete().where(BusinessComponent.business == business_id).execute()
        Business.delete().where(Business.business_id == business_id).execute()
        now = utcnow()
        BusinessTombstone.insert(business_id=business_id, generation=floor, deleted_at=now).on_conflict(
            conflict_target=[BusinessTombstone.business_id],
            update={BusinessTombstone.generation: floor, BusinessTombstone.deleted_at: now},
        ).execute()
        audit.record(
            actor,
            "business.deleted",
            business_id,
            {"name": business.business_name, "status": business.status, "components": len(rows)},
        )
    logger.info("business %s (%s, %s) deleted by %s", business_id, business.business_name, business.status, actor)
    return {"status": "success", "message": "deleted", "business_id": business_id}
