"""The fleet at a glance (the console's overview): nodes online, apps healthy or short, businesses by state,
fleet tasks of the last hour, the latest audit entries. Plain data, counted in the database and one Redis
round trip; no per-node or per-instance objects, so it stays cheap at 10,000 nodes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from peewee import fn
from redis import Redis

from manager_api.models import App, AppInstance, AuditLog, Business, FleetTask, utcnow
from manager_api.services.apps.specs import spec_of
from manager_api.services.apps.state import RUN, STOPPED
from manager_api.services.nodes import manual_list
from shared.states import FleetTaskStatus

RECENT_AUDIT = 8
"""Audit entries the overview shows."""


def _apps() -> dict[str, int]:
    healthy: dict[str, int] = dict(
        AppInstance.select(AppInstance.app, fn.COUNT(AppInstance.id))
        .where(AppInstance.desired == RUN, AppInstance.health == "healthy")
        .group_by(AppInstance.app)
        .tuples()
    )
    unhealthy = {
        name
        for (name,) in AppInstance.select(AppInstance.app)
        .where(AppInstance.desired == RUN, AppInstance.health == "unhealthy")
        .distinct()
        .tuples()
    }
    counts = {"total": 0, "healthy": 0, "unhealthy": 0, "short": 0, "stopped": 0}
    for app in App.select():
        counts["total"] += 1
        if app.desired == STOPPED:
            counts["stopped"] += 1
            continue
        planned = int(spec_of(app)["instances"])
        if app.name in unhealthy:
            counts["unhealthy"] += 1
        elif healthy.get(app.name, 0) < planned:
            counts["short"] += 1
        else:
            counts["healthy"] += 1
    return counts


def summary(redis: Redis, offline_after_intervals: int) -> dict[str, Any]:
    """What the overview shows, as of now."""
    nodes = manual_list.read(redis, offline_after_intervals)
    online = sum(1 for row in nodes.rows if nodes.live.is_online(row[0]))
    hour_ago = utcnow() - timedelta(hours=1)
    tasks = dict(
        FleetTask.select(FleetTask.status, fn.COUNT(FleetTask.id))
        .where((FleetTask.status == FleetTaskStatus.RUNNING) | (FleetTask.finished_at >= hour_ago))
        .group_by(FleetTask.status)
        .tuples()
    )
    by_state = Business.select(Business.status, fn.COUNT(Business.business_id)).group_by(Business.status)
    businesses = dict(by_state.tuples())
    audit = list(AuditLog.select().order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(RECENT_AUDIT))
    return {
        "nodes": {"total": len(nodes.rows), "online": online, "offline": len(nodes.rows) - online},
        "apps": _apps(),
        "businesses": dict(sorted(businesses.items())),
        "tasks": {
            "running": tasks.get(FleetTaskStatus.RUNNING, 0),
            "failed_last_hour": tasks.get(FleetTaskStatus.FAILED, 0),
            "completed_last_hour": tasks.get(FleetTaskStatus.COMPLETED, 0),
        },
        "audit": [{"at": row.at, "actor": row.actor, "action": row.action, "target": row.target} for row in audit],
    }
