"""Schedules: fleet tasks fired by cron or interval; the Schedule table is the truth the cron runner follows."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import IntegrityError
from redis import Redis

from manager_api import db
from manager_api.models import FleetTask, Schedule, utcnow
from manager_api.services import access, audit, secret_store
from manager_api.services.errors import Conflict, Invalid, NotFound, NotPermitted
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import targets as fleet_targets
from manager_api.services.paging import Page, page_of
from manager_api.services.processors.sealed import posted as processor_posted
from manager_api.services.processors.sealed import seal as processor_seal
from manager_api.services.schedules import agent_sets
from manager_api.services.scripts import running as script_runs
from shared import defaults
from shared.schedule_triggers import naive, next_fire, trigger_of

logger = logging.getLogger(__name__)

NOT_FOUND = "Schedule not found"
RECENT_TASKS = 20
"""Task ids shown with a schedule's detail."""


def created_by_of(name: str) -> str:
    """The created_by of the tasks a schedule fires (and the actor recorded for them)."""
    return f"schedule:{name}"


@dataclass(frozen=True)
class ScheduleDetail:
    """A schedule with the ids of its most recent fleet tasks, newest first."""

    schedule: Schedule
    recent_task_ids: list[str]


def get(schedule_id: str) -> Schedule:
    """The schedule ``schedule_id``, or a 404."""
    row = Schedule.get_or_none(Schedule.id == schedule_id) if len(schedule_id) <= 64 else None
    if row is None:
        raise NotFound(NOT_FOUND)
    return row


def _first_run(row: Schedule, now: datetime) -> datetime | None:
    if row.on_agent:
        return None  # the agents fire it from their own clocks: the manager does not know their next run
    return naive(next_fire(trigger_of(row.cron, row.interval, row.created_at), now))


def _taken(name: str) -> Conflict:
    # A conflict with what exists, not a malformed request: no "Invalid request format" prefix (that is 400's).
    message = f"a schedule named '{name}' already exists"
    return Conflict(f"Schedule name '{name}' is taken", {"errors": {"name": [message]}})


def create(
    data: dict[str, Any],
    actor: str,
    redis: Redis | None = None,
    offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS,
) -> Schedule:
    """Record a new schedule (validated by ScheduleSchema); a taken name is a 409.

    An operator token's scope is checked now (``redis`` given: the API), against the nodes its targets reach
    today, and kept with the schedule: every firing is checked against it again (fire), so a node that comes to
    match the targets later but lies outside the token's node query is never reached (README).
    """
    # A script and its parameters checked as POST /api/tasks checks them (400 naming the field, nothing written).
    script = _script_of(data)
    command = script.command if script is not None else data["command"]
    fleet_targets.queries(data["targets"])  # a malformed query target: 400 now, not a failure at every firing
    access.check_command(command, {**(data.get("env") or {}), **(data.get("secret_env") or {})})
    if redis is not None:
        fleet_tasks.check_scope(redis, offline_after_intervals, data["targets"])
    row = _new_row(data, actor, script, command, utcnow())
    try:
        with db.write_transaction():
            if Schedule.select().where(Schedule.name == data["name"]).exists():
                raise _taken(data["name"])
            if script is not None:
                script_runs.find(data["script"])  # not deleted since it was checked (delete looks for schedules)
            # The API knows the first run at once; the cron runner keeps it current from then on.
            row.next_run_at = _first_run(row, row.created_at)
            row.save(force_insert=True)
            trigger = {"cron": row.cron} if row.cron else {"interval": row.interval}
            if row.on_agent:
                trigger["on_agent"] = True
                trigger["agent_set_version"] = agent_sets.bump()
            audit.record(actor, "schedule.create", row.id, {"name": row.name, **trigger})
    except IntegrityError as exc:
        # Another request won the race between our check and insert.
        raise _taken(data["name"]) from exc
    logger.info("schedule %s (%s) created by %s", row.id, row.name, actor)
    _push_if_on_agent(row, redis, offline_after_intervals)
    return row


def _new_row(
    data: dict[str, Any],
    actor: str,
    script: script_runs.ScriptRun | None,
    command: str,
    now: datetime,
) -> Schedule:
    """The Schedule row of a checked request, secrets sealed (not saved yet)."""
    plain_params, secret_params = _split_params(data, script)
    return Schedule(
        id=uuid.uuid4().hex,
        name=data["name"],
        description=data.get("description", ""),
        command=command,
        script=f"{script.ref['name']}@{script.ref['version']}" if script is not None else "",
        params=json.dumps(plain_params, ensure_ascii=False),
        secret_params=secret_store.encrypt_env(secret_params),
        targets=json.dumps(data["targets"], ensure_ascii=False),
        timeout=data["timeout"],
        env=json.dumps(data.get("env") or {}, ensure_ascii=False),
        secret_env=secret_store.encrypt_env(data.get("secret_env")),
        processor=processor_seal(data.get("processor")),
        scope=access.scope_of_current(),
        cron=data.get("cron"),
        interval=data.get("interval"),
        on_agent=bool(data.get("on_agent")),
        created_by=actor,
        created_at=now,
        updated_at=now,
    )


def _script_of(data: dict[str, Any]) -> script_runs.ScriptRun | None:
    """The script a schedule runs, checked (Invalid naming the field); None for a command. An on_agent schedule's
    node would hold a secret parameter's value at rest to fire without the manager: refused, as secretEnv is."""
    if not data.get("script"):
        return None
    script = script_runs.prepare(data)
    if data.get("on_agent") and script.secret_env:
        names = ", ".join(sorted(script.ref["secret_params"]))
        raise Invalid(f"params: an on_agent schedule cannot carry secret parameters ({names}) (not in this version)")
    return script


def _split_params(data: dict[str, Any], script: script_runs.ScriptRun | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameter values given, as given (each firing checks them again, typed): the plain ones, and the secret
    ones (strings: only a string parameter may be secret), which are sealed at rest."""
    plain: dict[str, Any] = {}
    secret: dict[str, str] = {}
    if script is None:
        return plain, secret
    hidden = set(script.ref["secret_params"])
    for name, value in (data.get("params") or {}).items():
        if value is not None:
            (secret if name in hidden else plain)[name] = value
    return plain, secret


def params_of(row: Schedule) -> dict[str, Any]:
    """A schedule's parameter values, the secret ones opened: what each firing gives its task."""
    return {**json.loads(row.params), **secret_store.decrypt_env(row.secret_params)}


def _push_if_on_agent(row: Schedule, redis: Redis | None, offline_after_intervals: int) -> None:
    """After the commit of a change of an on_agent schedule: every node gets its new set (agent_sets)."""
    if row.on_agent and redis is not None:
        agent_sets.changed(redis, offline_after_intervals)


def listing(page: int, page_size: int) -> Page:
    """A page of schedules, oldest first (no children counted)."""
    total, rows = page_of(Schedule.select(), page, page_size, Schedule.created_at, Schedule.id)
    return Page(total, rows, {})


def detail(schedule_id: str) -> ScheduleDetail:
    """A schedule with the ids of its most recent tasks, newest first."""
    row = get(schedule_id)
    # created_at bounds out an older, deleted schedule that had the same name.
    recent: list[tuple[str]] = list(
        FleetTask.select(FleetTask.task_id)
        .where(FleetTask.created_by == created_by_of(row.name), FleetTask.created_at >= row.created_at)
        .order_by(FleetTask.created_at.desc(), FleetTask.id.desc())
        .limit(RECENT_TASKS)
        .tuples()
    )
    return ScheduleDetail(row, [task_id for (task_id,) in recent])


def check_reach(row: Schedule, redis: Redis | None, offline_after_intervals: int) -> None:
    """NotPermitted when an operator token may not touch this schedule: its command beyond the allowlist, or its
    targets reaching beyond the token's nodes now (a schedule an admin made for the whole fleet, say)."""
    access.check_command(row.command, {**json.loads(row.env), **secret_store.names_of(row.secret_env)})
    if redis is not None:
        fleet_tasks.check_scope(redis, offline_after_intervals, json.loads(row.targets))


def set_paused(
    schedule_id: str,
    paused: bool,
    actor: str,
    redis: Redis | None = None,
    offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS,
) -> Schedule:
    """Pause or resume a schedule; doing it twice changes nothing the second time."""
    changed = False
    with db.write_transaction():
        row = get(schedule_id)
        check_reach(row, redis, offline_after_intervals)
        if row.paused != paused:
            now = utcnow()
            row.paused = paused
            row.version += 1
            row.updated_at = now
            row.next_run_at = None if paused else _first_run(row, now)
            row.save()
            detail: dict[str, Any] = {"name": row.name}
            if row.on_agent:
                detail["agent_set_version"] = agent_sets.bump()
            audit.record(actor, "schedule.pause" if paused else "schedule.resume", row.id, detail)
            changed = True
            logger.info("schedule %s (%s) %s by %s", row.id, row.name, "paused" if paused else "resumed", actor)
    if changed:
        _push_if_on_agent(row, redis, offline_after_intervals)
    return row


def delete(
    schedule_id: str,
    actor: str,
    redis: Redis | None = None,
    offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS,
) -> None:
    """Delete a schedule; the tasks it fired stay."""
    with db.write_transaction():
        row = get(schedule_id)
        check_reach(row, redis, offline_after_intervals)
        row.delete_instance()
        detail: dict[str, Any] = {"name": row.name}
        if row.on_agent:
            detail["agent_set_version"] = agent_sets.bump()
        audit.record(actor, "schedule.delete", row.id, detail)
    logger.info("schedule %s (%s) deleted by %s", row.id, row.name, actor)
    _push_if_on_agent(row, redis, offline_after_intervals)


# -- the cron runner's side ------------------------------------------------------------------------


def definitions() -> dict[str, int]:
    """Version of every active (not paused) schedule the manager fires: what the cron runner must hold (never an
    on_agent one: its agents fire it)."""
    rows: list[tuple[str, int]] = list(
        Schedule.select(Schedule.id, Schedule.version)
        .where(Schedule.paused == False, Schedule.on_agent == False)  # noqa: E712
        .tuples()
    )
    return dict(rows)


def claim(schedule_id: str, version: int) -> Schedule | None:
    """Mark a firing of the schedule now; None when it was paused, deleted or changed meanwhile.

    Checked at the moment of firing, so a pause or delete takes effect at once, not at the next re-sync.
    """
    with db.write_transaction():
        row = Schedule.get_or_none(Schedule.id == schedule_id)
        if row is None or row.paused or row.on_agent or row.version != version:
            return None
        Schedule.update(last_run_at=utcnow()).where(Schedule.id == schedule_id).execute()
    return row


def fire(redis: Redis, schedule_id: str, version: int, offline_after_intervals: int) -> str | None:
    """Run one firing: an ordinary fleet task, started at once; returns its task_id (None when skipped)."""
    row = claim(schedule_id, version)
    if row is None:
        logger.info("schedule %s: firing skipped (paused, deleted or changed)", schedule_id)
        return None
    actor = created_by_of(row.name)
    # A script's firing is the task POST /api/tasks would make of it: its script checked again and resolved.
    run: dict[str, Any] = {"script": row.script, "params": params_of(row)} if row.script else {"command": row.command}
    data = {
        "name": row.name,
        "description": row.description,
        **run,
        "targets": json.loads(row.targets),
        "timeout": row.timeout,
        "env": json.loads(row.env),
        "secret_env": secret_store.decrypt_env(row.secret_env),  # re-encrypted into the task's own row
        "processor": processor_posted(row.processor),  # sealed again into the task's own row
        "created_by": actor,
        "start": True,
    }
    # The firing runs under the scope its creator's token had (none for an admin's schedule): the same checks
    # as the API's, now, against the nodes the targets reach today.
    access.use(access.identity_of_scope(row.scope))
    try:
        task_id = fleet_tasks.create(redis, data, actor, offline_after_intervals)
    except (NotPermitted, Invalid) as exc:  # Invalid: its script no longer resolves (it cannot be deleted)
        logger.warning("schedule %s (%s): firing refused: %s", schedule_id, row.name, exc.message)
        with db.write_transaction():
            audit.record(actor, "schedule.fire_refused", schedule_id, {"name": row.name, "reason": exc.message})
        return None
    finally:
        access.use(None)
    with db.write_transaction():
        Schedule.update(last_task_id=task_id).where(Schedule.id == schedule_id).execute()
    logger.info("schedule %s (%s) fired fleet task %s", schedule_id, row.name, task_id)
    return task_id


def record_next_runs(next_runs: dict[str, datetime | None]) -> int:
    """Store the cron runner's next run times (aware UTC) where they changed; returns how many rows changed."""
    if not next_runs:
        return 0
    rows: list[tuple[str, datetime | None]] = list(
        Schedule.select(Schedule.id, Schedule.next_run_at).where(Schedule.id.in_(list(next_runs))).tuples()
    )
    stored = dict(rows)
    changed = {sid: naive(when) for sid, when in next_runs.items() if sid in stored and stored[sid] != naive(when)}
    if changed:
        with db.write_transaction():
            for sid, when in changed.items():
                # Not when paused meanwhile: a paused schedule shows no next run.
                Schedule.update(next_run_at=when).where(Schedule.id == sid, Schedule.paused == False).execute()  # noqa: E712
    return len(changed)
