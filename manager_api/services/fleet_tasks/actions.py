"""Fleet tasks (document 004): create, start and cancel one (reads.py reads them, state.py derives their status)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from peewee import fn
from redis import Redis
from redis.exceptions import RedisError

from manager_api import db, prepared
from manager_api.models import FleetTask, Node, TaskHost, utcnow
from manager_api.services import access, audit, dispatch, secret_store
from manager_api.services.errors import Conflict, ServiceError
from manager_api.services.fleet_tasks import targets
from manager_api.services.fleet_tasks.reads import get
from manager_api.services.fleet_tasks.state import (
    FINAL_STATUSES,
    OPEN_HOST_STATUSES,
    counts_of,
    recompute,
    store_derived,
)
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.placement.model import Candidate
from manager_api.services.processors import sealed as processors
from manager_api.services.scripts import running as script_runs
from shared import defaults
from shared.states import FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)


@dataclass
class _NewTask:
    """A task checked and laid out, not yet written: its row, its hosts' rows and what is audited of it."""

    row: dict[str, Any]
    actor: str
    plans: list[targets.HostPlan]
    hosts: list[dict[str, Any]]
    counts: dict[str, int]
    running: bool
    entries: list[tuple[str, str, dict[str, Any] | None]]
    starting: bool


Fleets = dict[tuple[str, ...], targets.Fleet]
"""The fleet read for each list of targets, kept while several tasks are created together (create_many)."""


def create(redis: Redis, data: dict[str, Any], actor: str, offline_after_intervals: int) -> str:
    """Record a new task (and start it unless ``start`` is false); returns its task_id.

    Started at once, it is recorded and started in one transaction: the path of every ``POST /api/tasks``. A task
    that starts running is written once, already running with its counters (its hosts' rows follow), and its two
    audit entries (created, started) in one statement.
    """
    new = _prepare(redis, data, actor, offline_after_intervals, None)
    with db.write_transaction():
        _record(new)
    return _send(redis, new)


def create_many(
    redis: Redis, items: list[tuple[dict[str, Any], str]], offline_after_intervals: int
) -> list[str | ServiceError]:
    """Create and start several tasks together (a workflow's wave): each (body, created_by) as create() would,
    but the fleet read once per distinct list of targets and every task written in one transaction. Returns, in
    order, each task_id or the ServiceError that refused that body (the others are created all the same); a
    RedisError (the fleet unreadable) creates none."""
    fleets: Fleets = {}
    results: list[_NewTask | ServiceError] = []
    for data, actor in items:
        try:
            results.append(_prepare(redis, data, actor, offline_after_intervals, fleets))
        except ServiceError as exc:
            results.append(exc)
    created = [new for new in results if isinstance(new, _NewTask)]
    if created:
        with db.write_transaction():
            for new in created:
                _record(new)
    return [_send(redis, new) if isinstance(new, _NewTask) else new for new in results]


def _prepare(
    redis: Redis, data: dict[str, Any], actor: str, offline_after_intervals: int, fleets: Fleets | None
) -> _NewTask:
    """Check a task body (400/403 before anything is written) and lay out its rows; ``fleets`` shares the fleet
    read between the tasks of one create_many."""
    # A script and its parameters, then a malformed query target: 400 before anything is written.
    script_run = script_runs.prepare(data) if data.get("script") else None
    command = script_run.command if script_run is not None else data["command"]
    targets.queries(data["targets"])
    access.check_command(command, {**(data.get("env") or {}), **(data.get("secret_env") or {})})
    env, secret = data.get("env") or {}, data.get("secret_env") or {}
    if script_run is not None:
        env, secret = {**env, **script_run.env}, {**secret, **script_run.secret_env}
    task_id = str(uuid.uuid4())
    now = utcnow()
    starting = data.get("start", True)
    # Read before taking the write lock: no Redis round trip while other writers wait.
    fleet = _fleet_for(redis, offline_after_intervals, data["targets"], fleets) if starting else None
    if fleet is not None:
        _check_scope(redis, offline_after_intervals, data["targets"], fleet)
    row: dict[str, Any] = {
        "task_id": task_id,
        "name": data["name"],
        "description": data.get("description", ""),
        "command": command,
        "parameters": data.get("parameters", ""),
        "timeout": data["timeout"],
        "targets": json.dumps(data["targets"], ensure_ascii=False),
        "env": json.dumps(env, ensure_ascii=False),
        "secret_env": secret_store.encrypt_env(secret),
        "processor": processors.seal(data.get("processor")),
        "processor_open": bool(data.get("processor")),  # the outbox looks at it until its summary is queued
        "script": json.dumps(script_run.ref, ensure_ascii=False) if script_run is not None else "",
        "status": FleetTaskStatus.PENDING.value,
        "created_by": data.get("created_by") or actor,
        "created_at": now,
        "updated_at": now,
    }
    plans = targets.resolve(data["targets"], fleet.nodes, fleet.selections) if fleet is not None else []
    hosts = _host_rows(plans, now)
    counts = counts_of(_by_status(hosts))
    # Still running once its hosts are written (some have not ended): what store_derived would write is known.
    running = fleet is not None and counts["ended"] < counts["total"]
    if running:
        row.update(
            status=FleetTaskStatus.RUNNING.value,
            total_hosts=counts["total"],
            completed_hosts=counts["ended"],
            failed_hosts=counts["failed"],
            started_at=now,
            started_by=actor,
        )
    created: dict[str, Any] = {"name": data["name"], "targets": data["targets"]}
    if script_run is not None:
        created["script"] = data["script"]
    entries: list[tuple[str, str, dict[str, Any] | None]] = [("task.create", task_id, created)]
    if fleet is not None:
        entries.append(("task.start", task_id, _start_detail(plans)))
    return _NewTask(row, actor, plans, hosts, counts, running, entries, starting and fleet is not None)


def _fleet_for(redis: Redis, offline_after_intervals: int, wanted: list[str], fleets: Fleets | None) -> targets.Fleet:
    if fleets is None:
        return fleet_of(redis, offline_after_intervals, wanted)
    key = tuple(wanted)
    if key not in fleets:
        fleets[key] = fleet_of(redis, offline_after_intervals, wanted)
    return fleets[key]


def _record(new: _NewTask) -> None:
    """Write a prepared task, its hosts and its audit entries (inside the caller's write transaction)."""
    row = new.row
    row["id"] = db.insert_row(FleetTask, row)
    if new.starting:
        now = row["created_at"]
        _record_hosts(row["id"], row["task_id"], new.hosts, new.counts, new.actor, now, derived=new.running)
    audit.record_all(new.actor, new.entries)


def _send(redis: Redis, new: _NewTask) -> str:
    """After the commit: send a started task to its hosts (or log a task created pending); its task_id."""
    row = new.row
    if new.starting:
        _dispatch(redis, FleetTask(**row), new.actor, new.plans)  # its line says the task was started
    else:
        logger.info(
            "fleet task %s (%s) created by %s on %d targets",
            row["task_id"],
            row["name"],
            new.actor,
            len(json.loads(row["targets"])),
        )
    return str(row["task_id"])


def fleet_of(redis: Redis, offline_after_intervals: int, wanted: list[str]) -> targets.Fleet:
    """The known nodes as targets see them, and what each ``query:`` target of ``wanted`` selects."""
    return targets.Fleet(
        _target_nodes(redis, offline_after_intervals, wanted),
        targets.read_selections(redis, offline_after_intervals, wanted),
    )


def check_scope(redis: Redis, offline_after_intervals: int, wanted: list[str]) -> None:
    """NotPermitted when ``wanted`` targets now reach a node outside the current token's node query, or nothing
    when the token has none (a schedule's targets, checked at its creation)."""
    if access.allowed_nodes(redis, offline_after_intervals) is not None:
        _check_scope(redis, offline_after_intervals, wanted, fleet_of(redis, offline_after_intervals, wanted))


def _check_scope(redis: Redis, offline_after_intervals: int, wanted: list[str], fleet: targets.Fleet) -> None:
    """NotPermitted naming the nodes the targets reach beyond the current token's node query (issue 15)."""
    reached = [plan.node_id for plan in targets.resolve(wanted, fleet.nodes, fleet.selections)]
    access.check_nodes(redis, offline_after_intervals, reached, "the task's targets")


def _target_nodes(redis: Redis, offline_after_intervals: int, wanted: list[str]) -> list[Candidate]:
    """The known nodes ``wanted`` may name: when it only names nodes (id, hostname, IP), those alone; a task on one
    node of a fleet of 10,000 then reads one node row and one liveness, not 10,000 of each."""
    # A forgotten node is not a target: a new node under its hostname must not be doubled by the old one.
    named = targets.names_only(wanted)

    def query() -> Any:
        nodes = Node.select(Node.id, Node.hostname, Node.ip, Node.labels).where(known())
        if named is None:
            return nodes
        return nodes.where(Node.id.in_(named) | Node.ip.in_(named) | fn.LOWER(Node.hostname).in_(lowered))

    lowered = [name.lower() for name in named or ()]
    values = [*named, *named, *lowered] if named is not None else []
    rows = prepared.rows(("fleet task target nodes", None if named is None else len(named)), values, query)
    live = snapshot.read(redis, [row[0] for row in rows], offline_after_intervals)
    out = []
    for node_id, hostname, ip, labels in rows:
        out.append(
            Candidate(
                node_id,
                hostname,
                live.is_online(node_id),
                labels=json.loads(labels or "{}"),
                ip=ip,
            )
        )
    return out


def start(redis: Redis, task_id: str, actor: str, offline_after_intervals: int) -> None:
    """Resolve the targets to hosts, record them and send RUN_COMMAND to every online one (409 unless pending)."""
    with db.write_transaction():
        task = get(task_id)
        if task.status != FleetTaskStatus.PENDING.value:
            raise Conflict(f"Task {task_id} is {task.status}: only a pending task can be started")
        given = {**json.loads(task.env), **secret_store.names_of(task.secret_env)}
        param_env = script_runs.param_env_names(task.script)  # the script's parameters: not env the caller set
        access.check_command(task.command, {k: v for k, v in given.items() if k not in param_env})
        fleet = fleet_of(redis, offline_after_intervals, json.loads(task.targets))
        _check_scope(redis, offline_after_intervals, json.loads(task.targets), fleet)
        plans = _record_start(task, actor, fleet)
    _dispatch(redis, task, actor, plans)


def _record_start(task: FleetTask, actor: str, fleet: targets.Fleet) -> list[targets.HostPlan]:
    """Record a pending task's hosts and its start (inside the caller's write transaction); returns the plans."""
    plans = targets.resolve(json.loads(task.targets), fleet.nodes, fleet.selections)
    now = utcnow()
    hosts = _host_rows(plans, now)
    _record_hosts(task.id, task.task_id, hosts, counts_of(_by_status(hosts)), actor, now)
    audit.record(actor, "task.start", task.task_id, _start_detail(plans))
    return plans


def _host_rows(plans: list[targets.HostPlan], now: datetime) -> list[dict[str, Any]]:
    """The task_hosts rows of ``plans`` (without their task), pending or failed to dispatch."""
    return [
        {
            "node": plan.node_id,
            "target": plan.target[:255],
            "hostname": plan.hostname,
            "ip": plan.ip,
            "status": (HostRunStatus.DISPATCH_FAILED if plan.error else HostRunStatus.PENDING).value,
            "error_message": plan.error,
            "finished_at": now if plan.error else None,
            "updated_at": now,
        }
        for plan in plans
    ]


def _by_status(hosts: list[dict[str, Any]]) -> dict[str, int]:
    by_status: dict[str, int] = {}
    for host in hosts:
        by_status[host["status"]] = by_status.get(host["status"], 0) + 1
    return by_status


def _record_hosts(
    task_pk: int,
    task_id: str,
    hosts: list[dict[str, Any]],
    counts: dict[str, int],
    actor: str,
    now: datetime,
    derived: bool = False,
) -> None:
    """Write a starting task's host rows, then its counters and status (unless ``derived``: its row has them)."""
    db.insert_rows(TaskHost, [{**host, "task": task_pk} for host in hosts])
    if not derived:
        # The counters come from the rows just written: no need to count them back.
        store_derived(task_pk, task_id, FleetTaskStatus.RUNNING, None, counts, started_at=now, started_by=actor)


def _start_detail(plans: list[targets.HostPlan]) -> dict[str, Any]:
    """The detail of a task's ``task.start`` audit entry."""
    return {"hosts": len(plans), "dispatch_failed": sum(1 for plan in plans if plan.error)}


def _dispatch(redis: Redis, task: FleetTask, actor: str, plans: list[targets.HostPlan]) -> None:
    """Send RUN_COMMAND to the hosts recorded pending; those it cannot reach fail as dispatch failed."""
    task_id = task.task_id
    runnable = [plan.node_id for plan in plans if plan.error is None and plan.node_id]
    failed = len(plans) - len(runnable)
    logger.info(
        "fleet task %s (%s) started by %s: %d hosts, %d dispatch failed", task_id, task.name, actor, len(plans), failed
    )
    try:
        if runnable:
            script_runs.ship(redis, task.script)
        dispatch.run_command(redis, runnable, run_payload(task))
    except RedisError as exc:
        logger.error("fleet task %s: RUN_COMMAND not sent: %s", task_id, exc)
        with db.write_transaction():
            TaskHost.update(
                status=HostRunStatus.DISPATCH_FAILED.value,
                error_message=f"could not enqueue the command: {exc}",
                finished_at=utcnow(),
                updated_at=utcnow(),
            ).where(TaskHost.task == task.id, TaskHost.status == HostRunStatus.PENDING.value).execute()
            recompute(task.id)


def run_payload(task: FleetTask) -> dict[str, Any]:
    """What RUN_COMMAND carries for ``task`` (dispatch.run_command adds the deadline, and seals ``secret_env``
    for each node: the plaintext here never leaves this process)."""
    payload = {
        "task_id": task.task_id,
        "command": task.command,
        "timeout": task.timeout,
        "env": json.loads(task.env),
        "secret_env": secret_store.decrypt_env(task.secret_env),
    }
    script = script_runs.job_part(task.script)
    if script is not None:
        payload["script"] = script  # a plain command's wire stays as it was
    return payload


def cancel(
    redis: Redis, task_id: str, actor: str, offline_after_intervals: int = defaults.OFFLINE_AFTER_INTERVALS
) -> None:
    """Cancel a task: pending hosts end at once, running ones get CANCEL_COMMAND (409 when already final)."""
    with db.write_transaction():
        task = get(task_id)
        if task.status in FINAL_STATUSES:
            raise Conflict(f"Task {task_id} is already {task.status}")
        open_hosts = list(
            TaskHost.select(TaskHost.node, TaskHost.status)
            .where(TaskHost.task == task.id, TaskHost.status.in_(OPEN_HOST_STATUSES))
            .tuples()
        )
        access.check_nodes(redis, offline_after_intervals, [node for node, _ in open_hosts], f"task {task_id}")
        now = utcnow()
        TaskHost.update(
            status=HostRunStatus.CANCELED.value,
            error_message="canceled before it started",
            finished_at=now,
            updated_at=now,
        ).where(TaskHost.task == task.id, TaskHost.status == HostRunStatus.PENDING.value).execute()
        FleetTask.update(
            status=FleetTaskStatus.CANCELED.value, canceled_at=now, canceled_by=actor, updated_at=now
        ).where(FleetTask.id == task.id).execute()
        recompute(task.id)
        running = sum(1 for _, status in open_hosts if status == HostRunStatus.RUNNING.value)
        audit.record(actor, "task.cancel", task_id, {"running": running, "pending": len(open_hosts) - running})
    logger.info("fleet task %s canceled by %s (%d hosts still open)", task_id, actor, len(open_hosts))
    # Pending hosts too: their RUN_COMMAND may be ahead in the queue, and the cancel kills what it starts.
    try:
        dispatch.cancel_command(redis, [node for node, _ in open_hosts if node], task_id)
    except RedisError as exc:
        # The cancel deadline still ends those hosts; the task stays canceled.
        logger.error("fleet task %s: CANCEL_COMMAND not sent: %s", task_id, exc)
