"""PUT /api/businesses/{id} (document 001 §9.4): diff the new request against the components by id.

- dropped: desired "removed" + STOP_COMPONENT; the row goes once its node reports it stopped;
- new: placed and deployed (generation 1);
- changed (any field of its spec differs), or not running as wanted (failed, stopped): a new generation,
  on its node while it still fits there, else re-placed;
- unchanged and running as wanted: untouched (same pid, same container), its reservation kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.config import Settings
from manager_api.models import Business, BusinessComponent, utcnow
from manager_api.services import audit
from manager_api.services.businesses.actions import (
    error,
    generation_floor,
    get,
    next_generation,
    place,
    send_rollout,
    start_generation,
)
from manager_api.services.businesses.scope import check_components, check_reach
from manager_api.services.businesses.specs import (
    SECRET,
    components_of,
    demand,
    differs,
    row_fields,
    secret_changes,
    spec_json,
)
from manager_api.services.businesses.state import (
    ENDED,
    REMOVED,
    RUNNING,
    Jobs,
    recompute,
    record_transition,
    set_status,
    stop_payload,
)
from manager_api.services.errors import INVALID_REQUEST, Conflict, Invalid
from manager_api.services.placement import candidates
from manager_api.services.placement.model import Candidate
from shared.states import BusinessState, ComponentState

logger = logging.getLogger(__name__)


def _keep_reservations(nodes: list[Candidate], kept: list[BusinessComponent]) -> list[Candidate]:
    """Add back what untouched components hold (load_nodes left the whole business out)."""
    extra: dict[str, tuple[float, int, int]] = {}
    for row in kept:
        if row.node_id is None:
            continue
        cpu, memory, gpus = extra.get(row.node_id, (0.0, 0, 0))
        extra[row.node_id] = (cpu + row.cpu_cores, memory + row.memory_mb, gpus + row.gpus)
    out = []
    for node in nodes:
        add = extra.get(node.node_id)
        if add is None:
            out.append(node)
            continue
        out.append(
            node._replace(
                cpu_reserved=node.cpu_reserved + add[0],
                memory_reserved=node.memory_reserved + add[1],
                gpus_reserved=node.gpus_reserved + add[2],
            )
        )
    return out


@dataclass
class _Diff:
    """What an update does to each component, by id."""

    removed: list[BusinessComponent] = field(default_factory=list)
    kept: list[BusinessComponent] = field(default_factory=list)
    replaced: list[tuple[BusinessComponent, dict[str, Any]]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, list[str]]:
        """The component ids of each part, as the answer and the audit entry name them."""
        return {
            "removed": [r.component_id for r in self.removed],
            "changed": [r.component_id for r, _ in self.replaced],
            "added": [s["component_id"] for s in self.added],
            "unchanged": [r.component_id for r in self.kept],
        }


def _diff(
    rows: dict[str, BusinessComponent], old_specs: dict[str, dict[str, Any]], new_specs: dict[str, dict[str, Any]]
) -> _Diff:
    """Sort the components: gone from the request, untouched, given a new generation, new."""
    diff = _Diff(removed=[r for cid, r in rows.items() if cid not in new_specs and r.desired != REMOVED])
    for cid, spec in new_specs.items():
        row = rows.get(cid)
        if row is None or row.desired == REMOVED:
            diff.added.append(spec)
        elif (
            cid in old_specs
            and not differs(old_specs[cid], spec)
            and not secret_changes(row.secret_environment_variables, spec)
            and _running_as_wanted(row)
        ):
            diff.kept.append(row)
        else:
            diff.replaced.append((row, spec))
    return diff


def _running_as_wanted(row: BusinessComponent) -> bool:
    return bool(row.desired == RUNNING and row.status not in ENDED)


def update(redis: Redis, business_id: str, data: dict[str, Any], actor: str, settings: Settings) -> dict[str, Any]:
    """Apply a new version of the business; only what differs is touched."""
    if data.get("business_id") not in (None, business_id):
        raise error(
            Invalid,
            f"{INVALID_REQUEST}: business_id: {data['business_id']!r} does not match the URL's {business_id!r}",
            business_id=business_id,
        )
    data = {**data, "business_id": business_id}
    grace = settings.component_stop_grace_seconds
    jobs = Jobs()
    check_components(data["components"])
    with db.write_transaction():
        business = get(business_id)
        check_reach(redis, settings, business_id)
        if business.status == BusinessState.STOPPING.value:
            raise error(
                Conflict, f"Business {business_id} is stopping: update it once it has stopped", business_id=business_id
            )
        old_specs = components_of(business.spec)
        rows = {
            row.component_id: row for row in BusinessComponent.select().where(BusinessComponent.business == business_id)
        }
        diff = _diff(rows, old_specs, {c["component_id"]: c for c in data["components"]})
        if not (diff.removed or diff.replaced or diff.added):
            _rename(business, data, actor)
            return {"status": "success", "message": "nothing to change", "business_id": business_id}
        _roll_out(redis, business, data, diff, rows, old_specs, actor, settings, jobs)
        summary = diff.summary()
        audit.record(actor, "business.update", business_id, summary)
        # Dropping only ended components settles at once: no report will come to do it.
        jobs.extend(recompute(business_id, actor, grace))
    logger.info(
        "business %s: update by %s: %d removed, %d changed, %d added, %d unchanged",
        business_id,
        actor,
        len(diff.removed),
        len(diff.replaced),
        len(diff.added),
        len(diff.kept),
    )
    send_rollout(redis, business_id, jobs, settings)
    return {"status": "success", "message": "updating", "business_id": business_id, **summary}


def _rename(business: Business, data: dict[str, Any], actor: str) -> None:
    """No component changes: only the name or rollback_on_failure may differ, kept and audited, nothing sent."""
    if spec_json(data) != business.spec:
        business.spec = spec_json(data)
        business.business_name = data["business_name"]
        business.save(only=[Business.spec, Business.business_name])
        audit.record(actor, "business.update", business.business_id, {"changed": [], "name": data["business_name"]})


def _roll_out(
    redis: Redis,
    business: Business,
    data: dict[str, Any],
    diff: _Diff,
    rows: dict[str, BusinessComponent],
    old_specs: dict[str, dict[str, Any]],
    actor: str,
    settings: Settings,
    jobs: Jobs,
) -> None:
    """Place what changed or is new, record the new spec and every component's step; the jobs go to ``jobs``."""
    business_id, grace = business.business_id, settings.component_stop_grace_seconds
    nodes = candidates.load_nodes(redis, settings.offline_after_intervals, exclude_business_id=business_id)
    nodes = _keep_reservations(nodes, diff.kept)
    demands = [demand(spec, row.node_id) for row, spec in diff.replaced] + [demand(spec) for spec in diff.added]
    placed = place(nodes, demands, business_id)
    now = utcnow()
    # Re-read-able history: the business's rollout starts here, its components' pending entries follow.
    business.spec = spec_json(data)
    business.business_name = data["business_name"]
    business.save(only=[Business.spec, Business.business_name])
    set_status(business, BusinessState.UPDATING, actor, "update")
    for row in diff.removed:
        old_spec = old_specs.get(row.component_id, {})
        old_grace = grace if old_spec.get("stop_grace_seconds") is None else old_spec["stop_grace_seconds"]
        _remove(row, actor, old_grace, now, jobs)
    for row, spec in diff.replaced:
        args = (business, row, spec, placed[row.component_id], jobs)
        next_generation(*args, actor=actor, reason="update: changed", grace=grace, new_spec=True)
    for spec in diff.added:
        _add(business, spec, rows.get(spec["component_id"]), placed[spec["component_id"]], actor, grace, now, jobs)


def _remove(row: BusinessComponent, actor: str, old_grace: float, now: datetime, jobs: Jobs) -> None:
    """A component gone from the request: stopped (its row goes once its node reports it), or gone at once."""
    if row.status in ENDED:
        # Nothing runs for it: it goes at once (a stop still goes to a failed one, in case).
        BusinessComponent.delete().where(BusinessComponent.id == row.id).execute()
        record_transition(row, REMOVED, "update: removed", actor)
    else:
        BusinessComponent.update(desired=REMOVED, status=ComponentState.STOPPING.value, updated_at=now).where(
            BusinessComponent.id == row.id
        ).execute()
        record_transition(row, ComponentState.STOPPING.value, "update: removed", actor)
    if row.node_id and row.status != ComponentState.STOPPED.value:
        jobs.stops.append((row.node_id, stop_payload(row, old_grace)))


def _add(
    business: Business,
    spec: dict[str, Any],
    stale: BusinessComponent | None,
    node_id: str,
    actor: str,
    grace: float,
    now: datetime,
    jobs: Jobs,
) -> None:
    """A component new to the request, on ``node_id``."""
    business_id, cid = business.business_id, spec["component_id"]
    if stale is not None:
        # Dropped by an earlier update and not yet gone: take its row over with a newer generation (a new
        # component: the dropped one's secret env is not inherited).
        spec = {**spec, SECRET: spec.get(SECRET) or {}}
        args = (business, stale, spec, node_id, jobs)
        next_generation(*args, actor=actor, reason="update: added", grace=grace, stop_grace=grace, new_spec=True)
        return
    # Above any generation of a component of that id removed before: its node may still hold it.
    first = generation_floor(business_id, cid) + 1
    BusinessComponent.create(
        business=business_id,
        component_id=cid,
        node=node_id,
        generation=first,
        desired=RUNNING,
        status=ComponentState.PENDING.value,
        updated_at=now,
        **row_fields(spec),
    )
    jobs.deploys.append(start_generation(business_id, spec, first, node_id, actor, "update: added", grace))
