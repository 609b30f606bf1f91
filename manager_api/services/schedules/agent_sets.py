"""Agent-side (on_agent) schedules: each target node holds its FULL set of them and fires them from its own clock.

Every change of an on_agent schedule (create, pause, resume, delete) bumps one version (AgentScheduleClock) and
sends every known node its set at that version (jobs.SYNC_AGENT_SCHEDULES); a joining node gets its set again.
Targets are resolved when the set is sent, query targets too (against the nodes' documents then): a node that
comes to match later gets the schedule at the next change or at its next join. An agent applies a set only when
it is newer than the one it holds, so sets queued out of order never take it back. RQ keeps a queued job without
expiry, so a node offline during a change finds it in its queue when it comes back (and at its join anyway).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from manager_api.models import AgentScheduleClock, Node, Schedule
from manager_api.services import access, dispatch
from manager_api.services.errors import Invalid
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import targets as fleet_targets
from manager_api.services.nodes.presence import known
from manager_api.services.scripts import running as script_runs
from shared import keys
from shared.schedule_triggers import aware

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetPush:
    """The sets to send: each node's schedules (wire form), all at one version."""

    version: int
    sets: dict[str, list[dict[str, Any]]]


def bump() -> int:
    """Bump the version of the agents' sets (inside the caller's write transaction); returns the new one."""
    if AgentScheduleClock.update(version=AgentScheduleClock.version + 1).execute() == 0:
        AgentScheduleClock.create(version=1)
    return current_version()


def current_version() -> int:
    """The version of the agents' sets now; 0 while no on_agent schedule was ever made."""
    row = AgentScheduleClock.select(AgentScheduleClock.version).order_by(AgentScheduleClock.id).first()
    return int(row.version) if row is not None else 0


def entry_of(row: Schedule) -> dict[str, Any]:
    """One schedule as its nodes hold it (shared.messages.AgentScheduleSchema); no secret ever (refused).

    A script's entry carries what the agent runs it from its cache with (digest, interpreter, entry, arguments)
    and its parameters' environment; the agent fetches the script when it receives the set (Invalid when the
    script no longer resolves: it cannot be deleted while a schedule names it)."""
    env: dict[str, str] = json.loads(row.env)
    script = None
    if row.script:
        run = script_runs.prepare({"script": row.script, "params": json.loads(row.params), "env": env})
        env = {**env, **run.env}
        script = script_runs.wire_part(run.ref)
    return {
        "id": row.id,
        "name": row.name,
        "command": row.command,
        "script": script,
        "timeout": float(row.timeout),
        "env": env,
        "cron": row.cron,
        "interval": row.interval,
        "created_at": aware(row.created_at).timestamp(),
        "paused": bool(row.paused),
    }


def plan(redis: Redis, offline_after_intervals: int, node_ids: list[str] | None = None) -> SetPush:
    """The sets of ``node_ids`` (every known node when None) as they are now.

    The version is read before the schedules: a set is never older than its version says (a change committed in
    between makes it newer, and that change sends its own set at a higher version anyway).
    """
    version = current_version()
    if node_ids is None:
        node_ids = [node_id for (node_id,) in Node.select(Node.id).where(known()).tuples()]
    wanted = set(node_ids)
    sets: dict[str, list[dict[str, Any]]] = {node_id: [] for node_id in node_ids}
    rows = list(Schedule.select().where(Schedule.on_agent == True).order_by(Schedule.created_at))  # noqa: E712
    for row in rows:
        try:
            entry = entry_of(row)
        except Invalid as exc:  # its script went away (a race with its deletion): the others still go
            logger.error("schedule %s (%s): not sent to its nodes: %s", row.id, row.name, exc.message)
            continue
        if entry["script"] is not None:
            # Its nodes fetch it when the set arrives: it must be in Redis then (an emptied Redis lost it).
            script_runs.ship_digest(redis, entry["script"]["digest"])
        # Offline nodes too: the job waits in their queue.
        for node_id in plan_nodes(redis, offline_after_intervals, row, warn=True):
            if node_id in wanted:
                sets[node_id].append(entry)
    return SetPush(version, sets)


def _scope_nodes(redis: Redis, offline_after_intervals: int, scope: str) -> frozenset[str] | None:
    """The nodes the scope kept with a schedule (its creator's token's) reaches now; None: no limit (an admin's)."""
    if not scope:
        return None
    previous = access.current()
    access.use(access.identity_of_scope(scope))
    try:
        return access.allowed_nodes(redis, offline_after_intervals)
    finally:
        access.use(previous)


@dataclass(frozen=True)
class HeldVersion:
    """What one target node of an on_agent schedule holds: the version of its set, as its heartbeat last said."""

    node_id: str
    hostname: str
    version: int | None  # None: no heartbeat says (an agent older than agent-side schedules, or never seen)


def held_versions(redis: Redis, offline_after_intervals: int, row: Schedule) -> list[HeldVersion]:
    """The version each node the schedule is sent to holds now (from its heartbeat), by hostname."""
    node_ids = plan_nodes(redis, offline_after_intervals, row)
    if not node_ids:
        return []
    names = dict(Node.select(Node.id, Node.hostname).where(Node.id.in_(node_ids)).tuples())
    with redis.pipeline(transaction=False) as pipe:
        for node_id in node_ids:
            pipe.hget(keys.node_heartbeat(node_id), "agent_schedules_version")
        raw = pipe.execute()
    out = []
    for node_id, value in zip(node_ids, raw, strict=True):
        try:
            version = int(value) if value not in (None, b"", "") else None
        except ValueError:
            version = None
        out.append(HeldVersion(node_id, str(names.get(node_id, "")), version))
    return sorted(out, key=lambda held: (held.hostname, held.node_id))


def plan_nodes(redis: Redis, offline_after_intervals: int, row: Schedule, warn: bool = False) -> list[str]:
    """The nodes ``row`` goes to now: its targets resolved (offline nodes too), kept to its creator's scope."""
    targets = json.loads(row.targets)
    fleet = fleet_tasks.fleet_of(redis, offline_after_intervals, targets)
    scope = _scope_nodes(redis, offline_after_intervals, row.scope)
    reached = {host.node_id for host in fleet_targets.resolve(targets, fleet.nodes, fleet.selections) if host.node_id}
    outside = sorted(reached - scope) if scope is not None else []
    if outside and warn:
        # Nodes that came to match after the schedule was made, outside its creator's node query.
        logger.warning("schedule %s (%s): nodes %s are outside its scope, not sent", row.id, row.name, outside)
    return sorted(reached - set(outside))


def send(redis: Redis, push: SetPush) -> int:
    """Enqueue each node's set; returns how many were sent (0 when Redis failed: the next join sends it)."""
    if not push.sets:
        return 0
    try:
        dispatch.sync_agent_schedules(redis, push.version, push.sets)
    except RedisError as exc:
        logger.error("agent schedule sets (version %d) not sent to %d nodes: %s", push.version, len(push.sets), exc)
        return 0
    return len(push.sets)


def changed(redis: Redis, offline_after_intervals: int) -> None:
    """After a change of an on_agent schedule was committed: send every known node its set."""
    push = plan(redis, offline_after_intervals)
    sent = send(redis, push)
    logger.info("agent schedule sets version %d sent to %d nodes", push.version, sent)


def rejoined(redis: Redis, offline_after_intervals: int, node_id: str) -> None:
    """A node (re)joined: send it its set again, unless on_agent schedules were never used."""
    if current_version() == 0:
        return
    push = plan(redis, offline_after_intervals, [node_id])
    if send(redis, push):
        logger.info(
            "node %s: agent schedule set version %d sent at its join (%d schedules)",
            node_id,
            push.version,
            len(push.sets[node_id]),
        )
