"""What the apps API changes: create, update (rolling), scale, restart (rolling), stop, start, delete.

Each action writes in one transaction, audited, reconciles the app there (services.apps.reconcile), and sends
the jobs after the commit; when Redis fails then, the duties' resend sends the runs again later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.config import Settings
from manager_api.models import App, AppInstance, utcnow
from manager_api.services import access, audit, secret_store
from manager_api.services.apps import reads
from manager_api.services.apps.reconcile import Fleet, reconcile, stop
from manager_api.services.apps.specs import process_part, spec_of
from manager_api.services.apps.state import NOT_FOUND, RUN, RUNNING, STOPPED, Jobs, send
from manager_api.services.errors import INVALID_REQUEST, Conflict, Invalid, NotFound
from shared import defaults

logger = logging.getLogger(__name__)


def _app(name: str) -> App:
    app = App.get_or_none(App.name == name)
    if app is None:
        raise NotFound(NOT_FOUND.format(name=name))
    found: App = app
    return found


def _send(redis: Redis, jobs: Jobs) -> None:
    try:
        send(redis, jobs)
    except RedisError as exc:  # the runs stay pending and are sent again by the duties (upkeep.resend)
        logger.error("apps: %d run and %d stop jobs not sent: %s", len(jobs.runs), len(jobs.stops), exc)


def _changed(
    redis: Redis, settings: Settings, name: str, actor: str, change: Callable[[App], dict[str, Any] | None], action: str
) -> dict[str, Any]:
    """Apply ``change`` to the app in a write transaction (it returns the audit detail, None: nothing to
    audit), reconcile it there, send the jobs after the commit; answer the app as GET shows it."""
    with db.write_transaction():
        app = _app(name)
        _check_scope(redis, settings.offline_after_intervals, app)
        detail = change(app)
        if detail is not None:
            app.updated_at = utcnow()
            app.settled = False
            app.save()
            audit.record(actor, action, name, detail)
        jobs = reconcile(app, Fleet(redis, settings.offline_after_intervals), actor)
    _send(redis, jobs)
    return reads.detail(name)


def _scoped(spec: dict[str, Any], secret_envs: dict[str, str] | None) -> dict[str, Any]:
    """The definition as an operator token may store it: its process and health checks in the allowlist (and so
    no env, secret or not), its nodeQuery ANDed with the token's (stored so: the duties' later placements keep to
    the token's nodes)."""
    env = {**(spec.get("envs") or {}), **(secret_envs or {})}
    access.check_process(spec["toProcess"], spec.get("args") or (), env)
    for check in spec.get("healthChecks") or ():
        if (check.get("command") or "").strip():
            access.check_command(check["command"])
    return {**spec, "nodeQuery": access.scoped_node_query(spec["nodeQuery"])}


def _check_scope(redis: Redis, offline_after_intervals: int, app: App) -> None:
    """NotPermitted when the current operator token may not touch ``app``: placed beyond its nodes, or with
    instances on nodes outside them."""
    access.check_app_query(app.name, spec_of(app)["nodeQuery"])
    nodes = AppInstance.select(AppInstance.node).where(AppInstance.app == app.name, AppInstance.desired == RUN)
    access.check_nodes(redis, offline_after_intervals, [row.node_id for row in nodes], f"app {app.name}")


def create(redis: Redis, spec: dict[str, Any], actor: str, settings: Settings) -> dict[str, Any]:
    """A new app, its instances placed at once; 409 when the name is taken."""
    spec = _scoped(spec, spec.get("secretEnvs"))
    name = spec["name"]
    secret = secret_store.encrypt_env(spec.pop("secretEnvs", None))  # apart from spec: only the token is stored
    with db.write_transaction():
        if App.get_or_none(App.name == name) is not None:
            raise Conflict(f"App {name} already exists", {"name": name})
        app = App.create(
            name=name, spec=json.dumps(spec), secret_envs=secret, version=1, desired=RUNNING, created_by=actor
        )
        jobs = reconcile(app, Fleet(redis, settings.offline_after_intervals), actor)
        audit.record(actor, "app.create", name, {"instances": spec["instances"], "placed": len(jobs.runs)})
    _send(redis, jobs)
    return reads.detail(name)


def update(redis: Redis, name: str, spec: dict[str, Any], actor: str, settings: Settings) -> dict[str, Any]:
    """A new definition: a new version (rolled out one instance at a time) only when what runs changed.
    ``secretEnvs`` left out (None) keeps the stored ones; given, a different set is a change like envs."""
    spec = dict(spec)
    secret = spec.pop("secretEnvs", None)
    spec = _scoped(spec, secret)

    def change(app: App) -> dict[str, Any] | None:
        old = spec_of(app)
        if spec["name"] != name:
            raise Invalid(
                f"{INVALID_REQUEST}: name: {spec['name']!r} is not the app's name {name!r} (an app is not renamed)"
            )
        # Compared in plain inside this process only; the audit names the field, never a value.
        secret_changed = secret is not None and secret != secret_store.decrypt_env(app.secret_envs)
        if old == spec and not secret_changed:
            return None
        new_version = secret_changed or process_part(old) != process_part(spec)
        if new_version:
            app.version += 1
        app.spec = json.dumps(spec)
        if secret_changed:
            app.secret_envs = secret_store.encrypt_env(secret)
        changed = sorted(key for key in set(old) | set(spec) if old.get(key) != spec.get(key))
        changed += ["secretEnvs"] if secret_changed else []
        return {"changed": changed, "version": app.version, "rolling": new_version}

    return _changed(redis, settings, name, actor, change, "app.update")


def scale(redis: Redis, name: str, instances: int, actor: str, settings: Settings) -> dict[str, Any]:
    """Change only the number of instances."""

    def change(app: App) -> dict[str, Any] | None:
        spec = spec_of(app)
        before = spec["instances"]
        spec["instances"] = instances
        app.spec = json.dumps(spec)
        return {"from": before, "to": instances}

    return _changed(redis, settings, name, actor, change, "app.scale")


def restart(redis: Redis, name: str, actor: str, settings: Settings) -> dict[str, Any]:
    """Replace every instance, one at a time (a new version of the same definition)."""

    def change(app: App) -> dict[str, Any] | None:
        if app.desired == STOPPED:
            raise Conflict(f"App {name} is stopped: start it instead")
        app.version += 1
        return {"version": app.version}

    return _changed(redis, settings, name, actor, change, "app.restart")


def stop_app(redis: Redis, name: str, actor: str, settings: Settings) -> dict[str, Any]:
    """No instances; the definition is kept."""

    def change(app: App) -> dict[str, Any] | None:
        if app.desired == STOPPED:
            return None
        app.desired = STOPPED
        return {}

    return _changed(redis, settings, name, actor, change, "app.stop")


def start_app(redis: Redis, name: str, actor: str, settings: Settings) -> dict[str, Any]:
    """Instances again, at the app's count."""

    def change(app: App) -> dict[str, Any] | None:
        if app.desired == RUNNING:
            return None
        app.desired = RUNNING
        return {}

    return _changed(redis, settings, name, actor, change, "app.start")


def delete(
    redis: Redis, name: str, actor: str, offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS
) -> dict[str, Any]:
    """The app and its rows go; every instance still wanted gets STOP_INSTANCE (reports of any other copy
    are answered with STOP_INSTANCE too: the manager does not know the instance)."""
    jobs = Jobs()
    with db.write_transaction():
        app = _app(name)
        _check_scope(redis, offline_after_intervals, app)
        spec = spec_of(app)
        rows = list(AppInstance.select().where(AppInstance.app == name, AppInstance.desired == RUN))
        for row in rows:
            stop(row, spec, "app deleted", jobs)
        App.delete().where(App.name == name).execute()
        audit.record(actor, "app.delete", name, {"stopped": len(jobs.stops)})
    _send(redis, jobs)
    return {"name": name, "deleted": True, "stopped_instances": [payload["instance_id"] for _, payload in jobs.stops]}
