"""Applying the agents' instance reports (kind shared.report_streams.INSTANCE) to the database.

The rule that decides which copy runs is the manager's alone, and one: an instance runs only where the manager
has a row for it, on that node, that it wants running. Any report of another instance still alive (lost and
replaced, stopped, scaled down, moved, of a deleted app, unknown) is answered with STOP_INSTANCE; a report that
such an instance stopped removes its row. So after a node rejoins, its stale copies stop within one report.

A wanted instance's row takes the reported state, health, pid, ports, restart count, last end and last check;
each new automatic restart becomes an AppRestart row, audited. An instance lost while its node was away and
reported alive again before its app replaced it is adopted back. Each app whose instances changed state or
health is reconciled once per batch (a rolling update moves on when a new instance turns healthy).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from manager_api.models import App, AppInstance, AppRestart, utcnow
from manager_api.services import audit
from manager_api.services.alerts import events as alerts
from manager_api.services.apps.reconcile import reconcile
from manager_api.services.apps.specs import spec_of
from manager_api.services.apps.state import DUTIES, ENDED, LOST, RUN, Jobs, stop_payload
from manager_api.services.report_batches import Report, ReportKind
from manager_api.services.serialize import from_unix
from shared.states import AppInstanceState

logger = logging.getLogger(__name__)

ALIVE = frozenset({AppInstanceState.STARTING.value, AppInstanceState.RUNNING.value, AppInstanceState.BACKOFF.value})
"""Reported states of a process the agent still keeps: a copy the manager does not want is told to stop."""

ACK_KIND = "instance"
"""Instance reports are never acknowledged: the agent reports every instance it holds on a timer anyway."""


def report_kind(fleet_of: Any) -> ReportKind[tuple[str | None, Jobs], Jobs]:
    """Instance reports as the duties apply them in batches; settled: the jobs to send after the commit.

    ``fleet_of()`` gives the Fleet (Redis and liveness setting) the reconciles of a batch share.
    """

    def settle(stored: list[tuple[Report, tuple[str | None, Jobs]]]) -> Jobs:
        jobs = Jobs()
        touched = sorted({app for _report, (app, _jobs) in stored if app is not None})
        for _report, (_app, own) in stored:
            jobs.extend(own)
        if touched:
            fleet = fleet_of()
            for name in touched:
                app = App.get_or_none(App.name == name)
                if app is not None:
                    jobs.extend(reconcile(app, fleet, DUTIES, check_moves=False))
        return jobs

    return ReportKind(
        what="instance report",
        about=lambda report: f"app {report.get('app')} instance {report.get('instance_id')} ({report.get('state')})",
        store=apply,
        settle=settle,
        ack_kind=ACK_KIND,
        ack_name=lambda report: None,
    )


def _unwanted(report: Report, spec: dict[str, Any] | None, why: str) -> Jobs:
    jobs = Jobs()
    if report["state"] in ALIVE:
        logger.info(
            "app %s instance %s on node %s: %s; told to stop",
            report["app"],
            report["instance_id"],
            report["node_id"],
            why,
        )
        jobs.stops.append((report["node_id"], stop_payload(report["app"], report["instance_id"], spec, why)))
    return jobs


def apply(report: Report) -> tuple[str | None, Jobs]:
    """Store one report; returns (the app to reconcile when its instance changed, the stops it answers with)."""
    row = AppInstance.get_or_none(AppInstance.id == report["instance_id"])
    if row is None or row.app_id != report["app"] or row.node_id != report["node_id"]:
        return None, _unwanted(report, None, "unknown to the manager")
    app = App.get_or_none(App.name == row.app_id)
    spec = spec_of(app) if app is not None else None
    if row.desired != RUN:
        if report["state"] in ENDED:
            AppInstance.delete().where(AppInstance.id == row.id).execute()
            return row.app_id, Jobs()
        return None, _unwanted(report, spec, row.reason or "no longer wanted")
    if report["state"] == AppInstanceState.STOPPED.value:
        # Stopped without the manager asking (the agent forgot it): it leaves the count, and is replaced.
        AppInstance.delete().where(AppInstance.id == row.id).execute()
        logger.warning("app %s instance %s on node %s stopped unasked; replaced", row.app_id, row.id, row.node_id)
        return row.app_id, Jobs()
    # FAILED (the agent cannot start it at all) stays in the count and on show: placing it again elsewhere
    # would fail the same way, over and over; a restart or an update of the app replaces it.
    changes = _changes(row, report)
    new_restart = _record_restart(row, report)
    state_changed = changes.get(AppInstance.state, row.state) != row.state
    health_changed = changes.get(AppInstance.health, row.health) != row.health
    changes[AppInstance.updated_at] = utcnow()
    AppInstance.update(changes).where(AppInstance.id == row.id).execute()
    if state_changed:
        log = logger.warning if report["state"] == AppInstanceState.FAILED.value else logger.info
        log("app %s instance %s on node %s: %s -> %s", row.app_id, row.id, row.node_id, row.state, report["state"])
    if state_changed and row.state == LOST:
        audit.record(DUTIES, "app.instance.adopt", row.app_id, {"instance": row.id, "node": row.node_id})
    return (row.app_id if state_changed or health_changed or new_restart else None), Jobs()


def _changes(row: AppInstance, report: Report) -> dict[Any, Any]:
    check = report.get("last_check")
    changes: dict[Any, Any] = {
        AppInstance.state: report["state"],
        AppInstance.health: report["health"],
        AppInstance.pid: report.get("pid"),
        AppInstance.ports: json.dumps(report.get("ports") or []),
        AppInstance.restarts: report.get("restarts") or 0,
        AppInstance.exit_code: report.get("exit_code"),
        AppInstance.signal: report.get("signal"),
        AppInstance.reason: report.get("reason"),
        AppInstance.limits: report.get("limits"),
        AppInstance.started_at: from_unix(report.get("started_at")),
        AppInstance.reported_at: utcnow(),
        AppInstance.lost_at: None,
    }
    if check is not None:  # the last answer survives reports that carry none
        changes[AppInstance.last_check] = json.dumps(check)
    return changes


def _record_restart(row: AppInstance, report: Report) -> bool:
    """An AppRestart row (audited) for a restart not seen before; returns whether there was one."""
    restart = report.get("restart")
    if not restart:
        return False
    at = from_unix(restart["at"])
    if AppRestart.get_or_none((AppRestart.instance == row.id) & (AppRestart.at == at)) is not None:
        return False  # the same restart in a later report
    AppRestart.create(
        instance=row.id,
        at=at,
        reason=restart["reason"],
        exit_code=restart.get("exit_code"),
        signal=restart.get("signal"),
        oom=bool(restart.get("oom")),
    )
    audit.record(
        DUTIES,
        "app.instance.restart",
        row.app_id,
        {"instance": row.id, "node": row.node_id, "reason": restart["reason"]},
    )
    alerts.raise_alert(
        alerts.APP_INSTANCE_RESTARTED,
        app=row.app_id,
        instance=row.id,
        node_id=row.node_id,
        reason=restart["reason"],
        exit_code=restart.get("exit_code"),
        signal=restart.get("signal"),
        oom=bool(restart.get("oom")),
    )
    return True
