"""PUT /api/businesses/{id} (document 001 §9.4): diff the new request against the components by id.

- dropped: desired "removed" + STOP_COMPONENT; the row goes once its node reports it stopped;
- new: placed and deployed (generation 1);
- changed (any field of its spec differs), or not running as wanted (failed, stopped): a new generation,
  on its node while it still fits there, else re-placed;
- unchanged and running as wanted: untouched (same pid, same container), its reservation kept.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis

from manager_api import db
from manager_api.config import Settings
from manager_api.models import BusinessComponent, utcnow
from manager_api.services import audit
from manager_api.services.businesses.actions import (
    _plan,
    _send_rollout,
    error,
    generation_floor,
    get,
    next_generation,
    start_generation,
)
from manager_api.services.businesses.specs import components_of, demand, differs, row_fields, spec_json
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
    with db.write_transaction():
        business = get(business_id)
        if business.status == BusinessState.STOPPING.value:
            raise error(
                Conflict, f"Business {business_id} is stopping: update it once it has stopped", business_id=business_id
            )
        old_specs = components_of(business.spec)
        rows = {
            row.component_id: row for row in BusinessComponent.select().where(BusinessComponent.business == business_id)
        }
        new_specs = {c["component_id"]: c for c in data["components"]}
        removed = [r for cid, r in rows.items() if cid not in new_specs and r.desired != REMOVED]
        kept, replaced, added = [], [], []
        for cid, spec in new_specs.items():
            row = rows.get(cid)
            if row is None or row.desired == REMOVED:
                added.append(spec)
            elif (
                cid in old_specs
                and not differs(old_specs[cid], spec)
                and row.desired == RUNNING
                and row.status not in ENDED
            ):
                kept.append(row)
            else:
                replaced.append((row, spec))
        if not (removed or replaced or added):
            # Only the name or rollback_on_failure may differ: kept, audited, nothing sent.
            if spec_json(data) != business.spec:
                business.spec = spec_json(data)
                business.business_name = data["business_name"]
                business.save(only=[type(business).spec, type(business).business_name])
                audit.record(actor, "business.update", business_id, {"changed": [], "name": data["business_name"]})
            return {"status": "success", "message": "nothing to change", "business_id": business_id}
        nodes = candidates.load_nodes(redis, settings.offline_after_intervals, exclude_business_id=business_id)
        nodes = _keep_reservations(nodes, kept)
        demands = [demand(spec, row.node_id) for row, spec in replaced] + [demand(spec) for spec in added]
        placed = _plan(nodes, demands, business_id)
        now = utcnow()
        # Re-read-able history: the business's rollout starts here, its components' pending events follow.
        business.spec = spec_json(data)
        business.business_name = data["business_name"]
        business.save(only=[type(business).spec, type(business).business_name])
        set_status(business, BusinessState.UPDATING, actor, "update")
        for row in removed:
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
                old_spec = old_specs.get(row.component_id, {})
                old_grace = grace if old_spec.get("stop_grace_seconds") is None else old_spec["stop_grace_seconds"]
                jobs.stops.append((row.node_id, stop_payload(row, old_grace)))
        for row, spec in replaced:
            args = (business, row, spec, placed[row.component_id], jobs)
            next_generation(*args, actor=actor, reason="update: changed", grace=grace, new_spec=True)
        for spec in added:
            cid = spec["component_id"]
            stale = rows.get(cid)
            if stale is not None:
                # Dropped by an earlier update and not yet gone: take its row over with a newer generation.
                args = (business, stale, spec, placed[cid], jobs)
                next_generation(
                    *args, actor=actor, reason="update: added", grace=grace, stop_grace=grace, new_spec=True
                )
                continue
            # Above any generation of a component of that id removed before: its node may still hold it.
            first = generation_floor(business_id, cid) + 1
            BusinessComponent.create(
                business=business_id,
                component_id=cid,
                node=placed[cid],
                generation=first,
                desired=RUNNING,
                status=ComponentState.PENDING.value,
                updated_at=now,
                **row_fields(spec),
            )
            jobs.deploys.append(start_generation(business_id, spec, first, placed[cid], actor, "update: added", grace))
        summary = {
            "removed": [r.component_id for r in removed],
            "changed": [r.component_id for r, _ in replaced],
            "added": [s["component_id"] for s in added],
            "unchanged": [r.component_id for r in kept],
        }
        audit.record(actor, "business.update", business_id, summary)
        # Dropping only ended components settles at once: no report will come to do it.
        jobs.extend(recompute(business_id, actor, grace))
    logger.info(
        "business %s: update by %s: %d removed, %d changed, %d added, %d unchanged",
        business_id,
        actor,
        len(removed),
        len(replaced),
        len(added),
        len(kept),
    )
    _send_rollout(redis, business_id, jobs, settings)
    return {"status": "success", "message": "updating", "business_id": business_id, **summary}
