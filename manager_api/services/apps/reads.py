"""What GET /api/apps and GET /api/apps/{name} show: the definition, its progress, every instance."""

from __future__ import annotations

import json
from typing import Any

from manager_api.models import App, AppInstance, AppRestart
from manager_api.services.apps.reconcile import ready
from manager_api.services.apps.specs import secret_names, spec_of
from manager_api.services.apps.state import LOST, NOT_FOUND, RUN, STOPPED
from manager_api.services.errors import NotFound
from manager_api.services.paging import Page, page_of
from manager_api.services.serialize import iso

RESTARTS_SHOWN = 20
"""Most recent restarts shown per instance."""


def _json(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def instance_json(row: AppInstance, restarts: list[AppRestart]) -> dict[str, Any]:
    return {
        "id": row.id,
        "version": row.version,
        "node_id": row.node_id,
        "hostname": row.hostname,
        "desired": row.desired,
        "state": row.state,
        "health": row.health,
        "pid": row.pid,
        "ports": _json(row.ports, []),
        "restart_count": row.restarts,
        "exit_code": row.exit_code,
        "signal": row.signal,
        "reason": row.reason,
        "last_check": _json(row.last_check, None),
        "limits": row.limits,
        "placed_because": row.placed_because,
        "started_at": iso(row.started_at),
        "lost_at": iso(row.lost_at),
        "reported_at": iso(row.reported_at),
        "created_at": iso(row.created_at),
        "restarts": [
            {"at": iso(r.at), "reason": r.reason, "exit_code": r.exit_code, "signal": r.signal, "oom": r.oom}
            for r in restarts
        ],
    }


def _summary(app: App, rows: list[AppInstance]) -> dict[str, Any]:
    spec = spec_of(app)
    wanted = [row for row in rows if row.desired == RUN]
    count = 0 if app.desired == STOPPED else int(spec["instances"])
    current = [row for row in wanted if row.version == app.version]
    old = [row for row in wanted if row.version != app.version]
    shortfall = _json(app.shortfall, None)
    return {
        "name": app.name,
        "status": app.desired,
        "version": app.version,
        "definition": spec,
        "secretEnvs": secret_names(app),
        "counts": {
            "planned": count,
            "placed": len(wanted),
            "running": sum(1 for row in wanted if row.state == "running"),
            "healthy": sum(1 for row in wanted if row.health == "healthy"),
            "unhealthy": sum(1 for row in wanted if row.health == "unhealthy"),
            "lost": sum(1 for row in wanted if row.state == LOST),
            "stopping": len(rows) - len(wanted),
        },
        "deployment": {
            "in_progress": bool(old),
            "version": app.version,
            "updated": sum(1 for row in current if ready(row, spec)),
            "old": len(old),
            "total": count,
        },
        "settled": app.settled,
        "shortfall": shortfall,
        "created_by": app.created_by,
        "created_at": iso(app.created_at),
        "updated_at": iso(app.updated_at),
    }


def detail(name: str) -> dict[str, Any]:
    """The app with every instance (those being stopped too, ``desired`` "stop") and their recent restarts."""
    app = App.get_or_none(App.name == name)
    if app is None:
        raise NotFound(NOT_FOUND.format(name=name))
    rows = list(AppInstance.select().where(AppInstance.app == name).order_by(AppInstance.created_at, AppInstance.id))
    restarts: dict[str, list[AppRestart]] = {}
    if rows:
        query = (
            AppRestart.select()
            .where(AppRestart.instance.in_([row.id for row in rows]))
            .order_by(AppRestart.at.desc(), AppRestart.id.desc())
        )
        for restart in query:
            shown = restarts.setdefault(restart.instance_id, [])
            if len(shown) < RESTARTS_SHOWN:
                shown.append(restart)
    answer = _summary(app, rows)
    answer["instances"] = [instance_json(row, restarts.get(row.id, [])) for row in rows]
    return answer


def listing(page: int, page_size: int) -> Page:
    """A page of apps by name, each with its counts (no instance list)."""
    total, apps = page_of(App.select(), page, page_size, App.name)
    names = [app.name for app in apps]
    rows: dict[str, list[AppInstance]] = {}
    if names:
        for row in AppInstance.select().where(AppInstance.app.in_(names)):
            rows.setdefault(row.app_id, []).append(row)
    return Page(total, [_summary(app, rows.get(app.name, [])) for app in apps], {})


def instance(name: str, instance_id: str) -> AppInstance:
    """One instance of an app (404 when either is unknown)."""
    row = AppInstance.get_or_none((AppInstance.id == instance_id) & (AppInstance.app == name))
    if row is None:
        if App.get_or_none(App.name == name) is None:
            raise NotFound(NOT_FOUND.format(name=name))
        raise NotFound(f"App {name} has no instance {instance_id}")
    found: AppInstance = row
    return found
