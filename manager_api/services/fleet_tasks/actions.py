"""Fleet tasks (document 004): create, start, cancel, read, wait; apply the agents' reports; deadlines."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from peewee import OperationalError, fn
from redis import ConnectionPool, Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.models import FleetTask, Node, TaskHost, utcnow
from manager_api.services import audit, dispatch
from manager_api.services.errors import Conflict, NotFound
from manager_api.services.fleet_tasks import targets
from manager_api.services.fleet_tasks.answers import counts_of, task_json
from manager_api.services.nodes import snapshot
from manager_api.services.nodes.presence import known
from manager_api.services.paging import page_json, page_of, status_counts
from manager_api.services.placement.model import Candidate
from manager_api.services.serialize import from_unix
from shared import keys
from shared.defaults import OUTPUT_CAP_BYTES
from shared.states import FleetTaskStatus, HostRunStatus

logger = logging.getLogger(__name__)

NOT_FOUND = "Task not found"
FINAL_STATUSES = frozenset({FleetTaskStatus.COMPLETED, FleetTaskStatus.FAILED, FleetTaskStatus.CANCELED})
OPEN_HOST_STATUSES = (HostRunStatus.PENDING.value, HostRunStatus.RUNNING.value)
WAIT_POLL_SECONDS = 0.25
"""How often a waiting request looks at the task again."""
INSERT_CHUNK = 500
"""Host rows per INSERT, well under SQLite's bound-variable limit."""


def get(task_id: str) -> FleetTask:
    """The task ``task_id``, or a 404."""
    task = FleetTask.get_or_none(FleetTask.task_id == task_id)
    if task is None:
        raise NotFound(NOT_FOUND)
    return task


def is_final(status: str, finished_at: Any) -> bool:
    """A task is over when its status is final and every host has ended (finished_at is then set)."""
    return status in FINAL_STATUSES and finished_at is not None


# -- create, start, cancel ------------------------------------------------------------------------


def create(redis: Redis, data: dict[str, Any], actor: str, offline_after_intervals: int) -> str:
    """Record a new task (and start it unless ``start`` is false); returns its task_id.

    Started at once, it is recorded and started in one transaction: the path of every ``POST /api/tasks``.
    """
    task_id = str(uuid.uuid4())
    now = utcnow()
    starting = data.get("start", True)
    # Read before taking the write lock: no Redis round trip while other writers wait.
    nodes = _target_nodes(redis, offline_after_intervals) if starting else []
    with db.write_transaction():
        task = FleetTask.create(
            task_id=task_id,
            name=data["name"],
            description=data.get("description", ""),
            command=data["command"],
            parameters=data.get("parameters", ""),
            timeout=data["timeout"],
            targets=json.dumps(data["targets"], ensure_ascii=False),
            env=json.dumps(data.get("env") or {}, ensure_ascii=False),
            created_by=data.get("created_by") or actor,
            created_at=now,
            updated_at=now,
        )
        audit.record(actor, "task.create", task_id, {"name": data["name"], "targets": data["targets"]})
        plans = _record_start(task, actor, nodes) if starting else []
    logger.info("fleet task %s (%s) created by %s on %d targets", task_id, data["name"], actor, len(data["targets"]))
    if starting:
        _dispatch(redis, task, actor, plans)
    return task_id


def _target_nodes(redis: Redis, offline_after_intervals: int) -> list[Candidate]:
    # A forgotten node is not a target: a new node under its hostname must not be doubled by the old one.
    rows = list(Node.select(Node.id, Node.hostname, Node.ip, Node.labels).where(known()).tuples())
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
        plans = _record_start(task, actor, _target_nodes(redis, offline_after_intervals))
    _dispatch(redis, task, actor, plans)


def _record_start(task: FleetTask, actor: str, nodes: list[Candidate]) -> list[targets.HostPlan]:
    """Record a pending task's hosts and its start (inside the caller's write transaction); returns the plans."""
    plans = targets.resolve(json.loads(task.targets), nodes)
    now = utcnow()
    rows = [
        {
            "task": task.id,
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
    for i in range(0, len(rows), INSERT_CHUNK):
        TaskHost.insert_many(rows[i : i + INSERT_CHUNK]).execute()
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    # The counters come from the rows just written: no need to count them back.
    _store_derived(
        task.id, task.task_id, FleetTaskStatus.RUNNING, None, counts_of(by_status), started_at=now, started_by=actor
    )
    failed = sum(1 for plan in plans if plan.error)
    audit.record(actor, "task.start", task.task_id, {"hosts": len(plans), "dispatch_failed": failed})
    return plans


def _dispatch(redis: Redis, task: FleetTask, actor: str, plans: list[targets.HostPlan]) -> None:
    """Send RUN_COMMAND to the hosts recorded pending; those it cannot reach fail as dispatch failed."""
    task_id = task.task_id
    runnable = [plan.node_id for plan in plans if plan.error is None and plan.node_id]
    failed = len(plans) - len(runnable)
    logger.info("fleet task %s started by %s: %d hosts, %d dispatch failed", task_id, actor, len(plans), failed)
    try:
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
    """What RUN_COMMAND carries for ``task`` (dispatch.run_command adds the deadline)."""
    return {"task_id": task.task_id, "command": task.command, "timeout": task.timeout, "env": json.loads(task.env)}


def cancel(redis: Redis, task_id: str, actor: str) -> None:
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


# -- derived state ---------------------------------------------------------------------------------


def recompute(task_pk: int) -> FleetTaskStatus:
    """Store a task's counters and status derived from its hosts (call inside a write transaction)."""
    task_id, status, finished_at = (
        FleetTask.select(FleetTask.task_id, FleetTask.status, FleetTask.finished_at)
        .where(FleetTask.id == task_pk)
        .tuples()
        .get()
    )
    counts = counts_of(
        dict(
            TaskHost.select(TaskHost.status, fn.COUNT(TaskHost.id))
            .where(TaskHost.task == task_pk)
            .group_by(TaskHost.status)
            .tuples()
        )
    )
    return _store_derived(task_pk, task_id, FleetTaskStatus(status), finished_at, counts)


def _store_derived(
    task_pk: int,
    task_id: str,
    current: FleetTaskStatus,
    finished_at: Any,
    counts: dict[str, int],
    **changes: Any,
) -> FleetTaskStatus:
    """Store the counters, and the status and finished_at they imply, with ``changes``; returns the status."""
    new = current
    all_ended = counts["ended"] == counts["total"]
    if current == FleetTaskStatus.RUNNING and all_ended:
        new = FleetTaskStatus.COMPLETED if counts["succeeded"] == counts["total"] else FleetTaskStatus.FAILED
    if new in FINAL_STATUSES and all_ended and finished_at is None:
        finished_at = utcnow()
    FleetTask.update(
        status=new.value,
        total_hosts=counts["total"],
        completed_hosts=counts["ended"],
        failed_hosts=counts["failed"],
        finished_at=finished_at,
        updated_at=utcnow(),
        **changes,
    ).where(FleetTask.id == task_pk).execute()
    if new != current:
        logger.info("fleet task %s %s -> %s", task_id, current.value, new.value)
    return new


# -- reading ---------------------------------------------------------------------------------------


def detail(task_id: str) -> dict[str, Any]:
    """The task JSON with every host."""
    task = get(task_id)
    hosts = list(TaskHost.select().where(TaskHost.task == task.id).order_by(TaskHost.id))
    return task_json(task, hosts)


def listing(page: int, page_size: int, status: str | None, name: str | None) -> dict[str, Any]:
    """A page of tasks, newest first, without their hosts (``size`` repeats ``page_size``: its older name)."""
    query = FleetTask.select()
    if status:
        query = query.where(FleetTask.status == status)
    if name:
        query = query.where(FleetTask.name.contains(name))
    total, tasks = page_of(query, page, page_size, FleetTask.created_at.desc(), FleetTask.id.desc())
    by_task = status_counts(TaskHost.task, TaskHost.status, [t.id for t in tasks])
    items = [task_json(t, None, by_task[t.id]) for t in tasks]
    return {**page_json("tasks", items, total, page, page_size), "size": page_size}


def wait(redis: Redis, task_id: str, seconds: float) -> None:
    """Return once the task is over, or after ``seconds``.

    Woken through keys.task_changed_channel when the duties apply a report; the database is read again at
    least every WAIT_POLL_SECONDS too, for changes that come from elsewhere (deadlines, cancel).
    """
    deadline = time.monotonic() + seconds
    # A pool of its own: redis-py closes a pub/sub connection after use, and taking it from the app's pool
    # would leave the next request to reconnect to Redis before it can dispatch anything.
    shared_pool = redis.connection_pool
    pool = ConnectionPool(connection_class=shared_pool.connection_class, **shared_pool.connection_kwargs)
    pubsub = Redis(connection_pool=pool).pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.task_changed_channel(task_id))  # before the first read: no change slips by
        while True:
            row = FleetTask.select(FleetTask.status, FleetTask.finished_at).where(FleetTask.task_id == task_id)
            found = row.tuples().first()
            if found is None or is_final(*found):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            pubsub.get_message(timeout=min(WAIT_POLL_SECONDS, remaining))
    finally:
        pubsub.close()
        pool.disconnect()


def status_of(task_id: str) -> tuple[str, bool] | None:
    """(status, over) of a task, or None when it does not exist."""
    found = (
        FleetTask.select(FleetTask.status, FleetTask.finished_at).where(FleetTask.task_id == task_id).tuples().first()
    )
    if found is None:
        return None
    return found[0], is_final(*found)


# -- agents' reports -------------------------------------------------------------------------------


def _capped(text: str, truncated: bool) -> tuple[str, bool]:
    # The agent caps already; this keeps a misbehaving one from filling the database.
    if len(text) > OUTPUT_CAP_BYTES:
        return text[:OUTPUT_CAP_BYTES], True
    return text, truncated


def apply_reports(reports: list[dict[str, Any]]) -> list[str]:
    """Apply validated CommandReportSchema reports in one transaction; returns the ids of the tasks that changed.

    Each task is recomputed once per batch, not once per report: a task on 1,000 nodes sends 2,000 reports.
    A report that cannot be applied is logged and skipped; a busy database (OperationalError) fails the batch.
    """
    changed: dict[int, str] = {}
    with db.write_transaction():
        for report in _coalesce(reports):
            try:
                with db.database.atomic():  # a savepoint: one bad report does not undo the others
                    task_pk = _apply_host_change(report)
            except OperationalError:
                raise
            except Exception:
                logger.exception(
                    "report for fleet task %s from node %s could not be applied; dropped",
                    report.get("task_id"),
                    report.get("node_id"),
                )
                continue
            if task_pk is not None:
                changed[task_pk] = report["task_id"]
        for task_pk in changed:
            recompute(task_pk)
    return list(changed.values())


def _coalesce(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One report per host: the first that ends it, else the latest, keeping the pid and start time of the
    earlier ones (a host's running report and its final one often arrive in the same batch)."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:
        key = (report["task_id"], report["node_id"])
        earlier = last.get(key)
        if earlier is not None:
            if HostRunStatus(earlier["status"]).ended:
                continue  # an ended host never changes again
            running_since = earlier["at"] if earlier["status"] == HostRunStatus.RUNNING.value else None
            report = {
                **report,
                "pid": report.get("pid") if report.get("pid") is not None else earlier.get("pid"),
                "started_at": report.get("started_at") or earlier.get("started_at") or running_since,
            }
        last[key] = report
    return list(last.values())


def apply_report(report: dict[str, Any]) -> bool:
    """Apply one report; returns whether its host changed (an ended host never does)."""
    return bool(apply_reports([report]))


def _apply_host_change(report: dict[str, Any]) -> int | None:
    """Store one report on its host row; the host's task pk when it changed, else None."""
    task_id, node_id = report["task_id"], report["node_id"]
    new = HostRunStatus(report["status"])
    host = (
        TaskHost.select(TaskHost).join(FleetTask).where(FleetTask.task_id == task_id, TaskHost.node == node_id).first()
    )
    if host is None:
        logger.warning("report for fleet task %s from node %s matches no host; ignored", task_id, node_id)
        return None
    current = HostRunStatus(host.status)
    if current.ended:
        logger.debug("fleet task %s on node %s already %s, %s ignored", task_id, node_id, current, new)
        return None
    changes: dict[Any, Any] = {}
    if report.get("pid") is not None and report["pid"] != host.pid:
        changes[TaskHost.pid] = report["pid"]
    started = from_unix(report.get("started_at"))
    if started is None and new == HostRunStatus.RUNNING:
        started = from_unix(report["at"])
    if started is not None and host.started_at is None:
        changes[TaskHost.started_at] = started
    if new == HostRunStatus.RUNNING:
        if current == HostRunStatus.PENDING:
            changes[TaskHost.status] = new.value
    else:
        stdout, stdout_truncated = _capped(report.get("stdout") or "", bool(report.get("stdout_truncated")))
        stderr, stderr_truncated = _capped(report.get("stderr") or "", bool(report.get("stderr_truncated")))
        changes.update(
            {
                TaskHost.status: new.value,
                TaskHost.stdout: stdout,
                TaskHost.stderr: stderr,
                TaskHost.stdout_truncated: stdout_truncated,
                TaskHost.stderr_truncated: stderr_truncated,
                TaskHost.exit_code: report.get("exit_code"),
                TaskHost.error_message: report.get("error_message"),
                TaskHost.finished_at: from_unix(report.get("finished_at") or report["at"]),
            }
        )
    if not changes:
        return None
    changes[TaskHost.updated_at] = utcnow()
    TaskHost.update(changes).where(TaskHost.id == host.id).execute()
    logger.info(
        "fleet task %s on node %s: %s -> %s (exit %s)",
        task_id,
        node_id,
        current.value,
        changes.get(TaskHost.status, current.value),
        report.get("exit_code"),
    )
    task_pk: int = host.task_id
    return task_pk
