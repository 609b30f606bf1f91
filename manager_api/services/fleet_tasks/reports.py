"""Applying the agents' fleet task reports (a host's run of a task's command) to the database, idempotently."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from peewee import Query
from redis.client import Pipeline

from manager_api import db, prepared
from manager_api.models import FleetTask, TaskHost, utcnow
from manager_api.services.fleet_tasks import firings
from manager_api.services.fleet_tasks.state import recompute
from manager_api.services.report_batches import Report, ReportKind
from manager_api.services.serialize import from_unix
from shared import acks, keys
from shared.defaults import OUTPUT_CAP_BYTES
from shared.states import HostRunStatus

logger = logging.getLogger(__name__)

SELECT_CHUNK = 500
"""Node ids per SELECT of hosts, well under SQLite's bound-variable limit."""

PREPARED_MAX = 8
"""IN lists up to this long run from SQL text built once per process and length (manager_api.prepared)."""


def coalesce(reports: list[Report]) -> list[Report]:
    """One report per host: the first that ends it, else the latest, keeping the pid and start time of the
    earlier ones (a host's running report and its final one often arrive in the same batch)."""
    last: dict[tuple[str, str], Report] = {}
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


def store(report: Report) -> int | None:
    """Store one report on its host row; the host's task pk when it changed, else None (an ended host never does)."""
    return store_many([report])[0][1]


def store_many(reports: list[Report]) -> list[tuple[Report, int | None]]:
    """Store reports on their host rows: each with its host's task pk when it changed the row, else None.

    A task on 1,000 nodes sends 1,000 final reports, which the duties read in a few batches: one SELECT of the
    hosts per task and chunk, and one prepared UPDATE per set of columns run for every row (executemany),
    rather than a SELECT and an UPDATE built by the ORM per report (which took most of the duties' time).
    """
    firings.make_missing_tasks(reports)  # an agent-side schedule's firing: its task is made by its first report
    hosts = _hosts_of(reports)
    now = utcnow()
    out: list[tuple[Report, int | None]] = []
    updates: list[tuple[int, dict[Any, Any]]] = []
    succeeded: dict[str, int] = {}  # task id -> hosts that succeeded in this batch
    for report in reports:
        task_id, node_id = report["task_id"], report["node_id"]
        host = hosts.get((task_id, node_id))
        new = HostRunStatus(report["status"])
        if host is None:
            logger.warning("report for fleet task %s from node %s matches no host; ignored", task_id, node_id)
            out.append((report, None))
            continue
        current = HostRunStatus(host.status)
        changes = {} if current.ended else _changes(host, current, new, report)
        if not changes:
            logger.debug("fleet task %s on node %s already %s, %s ignored", task_id, node_id, current, new)
            out.append((report, None))
            continue
        changes[TaskHost.updated_at] = now
        for field, value in changes.items():
            setattr(host, field.name, value)  # a later report of the same host in this batch sees this one
        updates.append((host.id, changes))
        status = changes.get(TaskHost.status, current.value)
        if status == HostRunStatus.SUCCEEDED.value:
            succeeded[task_id] = succeeded.get(task_id, 0) + 1
            logger.debug("fleet task %s on node %s: %s -> %s", task_id, node_id, current.value, status)
        else:
            # Successes are counted in one line per task (below); anything else is told host by host.
            log = logger.info if not HostRunStatus(status).ended else logger.warning
            log(
                "fleet task %s on node %s: %s -> %s (exit %s)",
                task_id,
                node_id,
                current.value,
                status,
                report.get("exit_code"),
            )
        out.append((report, host.task_id))
    db.update_rows(TaskHost, updates)
    for task_id, count in succeeded.items():
        logger.info("fleet task %s: %d more hosts succeeded", task_id, count)
    return out


_READ = (TaskHost.id, TaskHost.task, TaskHost.node, TaskHost.status, TaskHost.pid, TaskHost.started_at)
"""The columns of a host that applying a report reads (_changes): not its output, which a final report replaces."""


def _hosts_of(reports: list[Report]) -> dict[tuple[str, str], TaskHost]:
    """The host rows the reports are about, by (task id, node id): one SELECT per task and chunk of nodes.

    A real-time call's report is a batch of one: its two SELECTs run from SQL text built once per process
    (manager_api.prepared) for short lists, where building the text cost more than running it."""
    task_ids = sorted({report["task_id"] for report in reports})
    tasks: dict[str, int] = dict(
        _prepared_if_short(
            "report tasks",
            task_ids,
            lambda: FleetTask.select(FleetTask.task_id, FleetTask.id).where(FleetTask.task_id.in_(task_ids)),
        )
    )
    by_task: dict[str, list[str]] = {}
    for report in reports:
        by_task.setdefault(report["task_id"], []).append(report["node_id"])
    hosts: dict[tuple[str, str], TaskHost] = {}
    for task_id, node_ids in by_task.items():
        if task_id not in tasks:
            continue
        task_pk = tasks[task_id]
        for i in range(0, len(node_ids), SELECT_CHUNK):
            chunk = node_ids[i : i + SELECT_CHUNK]
            if len(chunk) <= PREPARED_MAX:
                # Every column (prepared.models makes whole rows); a batch this short carries little output.
                query = TaskHost.select().where(TaskHost.task == task_pk, TaskHost.node.in_(chunk))
                found = prepared.models(TaskHost, ("report hosts", len(chunk)), [task_pk, *chunk], query.clone)
            else:
                found = list(TaskHost.select(*_READ).where(TaskHost.task == task_pk, TaskHost.node.in_(chunk)))
            for host in found:
                hosts[(task_id, str(host.node_id))] = host
    return hosts


def _prepared_if_short(name: str, values: list[Any], build: Callable[[], Query]) -> list[tuple[Any, ...]]:
    """The rows of ``build()``, from prepared text when ``values`` (its IN list) is short: one text per length,
    so only short lengths are kept (a batch of a large fleet's reports has hundreds of lengths, each rare)."""
    if len(values) <= PREPARED_MAX:
        return prepared.rows((name, len(values)), values, build)
    return list(build().tuples())


def _changes(host: TaskHost, current: HostRunStatus, new: HostRunStatus, report: Report) -> dict[Any, Any]:
    """The columns a report on a host not ended yet changes (empty: none)."""
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
        return changes
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
    return changes


def _capped(text: str, truncated: bool) -> tuple[str, bool]:
    # The agent caps already; this keeps a misbehaving one from filling the database.
    if len(text) > OUTPUT_CAP_BYTES:
        return text[:OUTPUT_CAP_BYTES], True
    return text, truncated


def _recompute_changed(stored: list[tuple[Report, int | None]]) -> list[str]:
    """Each task changed recomputed once per batch, not once per report (a task on 1,000 nodes sends 2,000)."""
    changed: dict[int, str] = {}
    for report, task_pk in stored:
        if task_pk is not None:
            changed[task_pk] = report["task_id"]
    for task_pk in changed:
        recompute(task_pk)
    return list(changed.values())


def tell_changed(pipe: Pipeline, task_ids: list[str]) -> None:
    """Queue the wake-up of the ?wait callers of ``task_ids`` (after the commit, so they read the change)."""
    for task_id in task_ids:
        pipe.publish(keys.task_changed_channel(task_id), "1")


def _final_name(report: Report) -> str | None:
    # Every final report is acknowledged, applied or not (a host that had ended, a task pruned): its node
    # would otherwise send it again forever.
    return str(report["task_id"]) if HostRunStatus(report["status"]).ended else None


KIND: ReportKind[int | None, list[str]] = ReportKind(
    what="fleet task report",
    about=lambda report: f"fleet task {report.get('task_id')}",
    store=store,
    store_many=store_many,
    settle=_recompute_changed,
    ack_kind=acks.COMMAND,
    ack_name=_final_name,
    prepare=coalesce,
)
"""Fleet task reports as the duties apply them in batches (services.report_batches); settled: the task ids changed."""
