"""Background duties, run once per manager (a thread of the launcher) under a Redis lock.

(a) consume the agents' task events, fleet task reports, business component reports and app instance reports
(each node's reports stream: stream_consumer) and apply them to the database; (b) every tick, persist which
nodes went online/offline, end fleet task hosts past their deadline or on a node gone offline, fail business
components on a node gone offline, mark app instances there lost and keep apps at their count
(services.apps.upkeep), and keep the schedule runner in line with the Schedule table; (c) every
hour, prune ended fleet tasks past their retention, every minute component usage samples past theirs. The
lock keeps two manager hosts on one Redis from both doing it: the schedules fire only in the lock holder,
so each tick fires once whatever the number of workers or hosts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.background.stream_consumer import StreamConsumer, StreamHandler
from manager_api.config import Settings
from manager_api.services import job_keys, report_batches, secret_store
from manager_api.services.alerts import delivery as alert_delivery
from manager_api.services.alerts import events as alert_events
from manager_api.services.apps import instance_reports
from manager_api.services.apps import state as app_state
from manager_api.services.apps import upkeep as app_upkeep
from manager_api.services.apps.reconcile import Fleet
from manager_api.services.businesses import actions as businesses
from manager_api.services.businesses import component_reports
from manager_api.services.businesses import upkeep as business_upkeep
from manager_api.services.businesses.state import Jobs
from manager_api.services.deployments import task_events
from manager_api.services.fleet_tasks import reports as fleet_task_reports
from manager_api.services.fleet_tasks import upkeep as fleet_task_upkeep
from manager_api.services.nodes import liveness as node_liveness
from manager_api.services.nodes import metrics_history as node_metrics
from manager_api.services.nodes import presence as node_presence
from manager_api.services.processors.sender import Sender as ProcessorSender
from manager_api.services.schedules.runner import ScheduleRunner
from manager_api.services.workflows import actions as workflow_actions
from manager_api.services.workflows import advance as workflows
from shared import heartbeat, keys, report_streams, tls

logger = logging.getLogger(__name__)

LOCK_TTL_MS = 5_000
"""The lock expires this long after its holder stops renewing it (renewed at every pass of the loop, at least once
a second): how long a killed holder leaves the duties undone before another manager host takes them over."""

PRUNE_EVERY = 3600.0
"""Seconds between two prunes of ended fleet tasks past their retention."""

METRICS_PRUNE_EVERY = 60.0
"""Seconds between two prunes of component usage samples past their retention (kept in hours)."""

RESEND_CHECK_EVERY = 5.0
"""Seconds between two looks for component jobs gone unanswered (business_upkeep.Resender)."""

_LOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _connect(settings: Settings, block_ms: int) -> Redis:
    """The duties' own Redis client."""
    if not settings.redis_url:
        raise ValueError("Duties need a Redis")
    # Socket timeout well above the XREADGROUP block time, or every idle read would time out.
    return tls.redis_from_url(
        settings.redis_url, settings.redis_ca_bundle, socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=3
    )


class Duties:
    """The duties thread: lock, node statuses every ``tick`` seconds, agents' reports in between."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis | None = None,
        tick: float = 1.0,
        block_ms: int = 1000,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis or _connect(settings, block_ms)
        self.settings = settings
        if settings.secrets_key_file:
            # The launcher's process holds no app: the schedules' firings (their secretEnv) and the processors'
            # sender (their URL and secret) open what the API sealed with the same key file.
            secret_store.configure(Path(settings.secrets_key_file))
        self.tick = tick
        self.block_ms = block_ms
        self.consumer = consumer or f"duties-{socket.gethostname()}"
        self.lock_token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holding = False
        self._next_prune = 0.0
        self._next_metrics_prune = 0.0
        self._next_node_sample = 0.0
        self._next_resend = 0.0
        self._redis_run_id = ""  # of the Redis the duties last saw: a new one means Redis restarted
        self.resender = business_upkeep.Resender(settings.component_resend_seconds)
        self.schedules = ScheduleRunner(self.redis, settings.offline_after_intervals, lambda: self._holding)
        self.streams = self._report_consumer()
        self.component_reports = component_reports.report_kind(
            settings.component_metrics_every_seconds, settings.component_stop_grace_seconds
        )
        self.instance_reports = instance_reports.report_kind(
            lambda: Fleet(self.redis, settings.offline_after_intervals)
        )
        self.app_recheck = app_upkeep.Recheck()
        self._next_app_resend = 0.0
        self.alerts = self._alert_sender(settings)
        # Always: a task may name a processor whatever the configuration; idle, it is one indexed look a pass.
        self.processors = ProcessorSender(settings.processor_max_attempts, lambda: self._holding, redis=self.redis)

    def _report_consumer(self) -> StreamConsumer:
        """The reader of the nodes' report streams, each kind of report to its handler."""
        return StreamConsumer(
            self.redis,
            keys.EVENTS_GROUP,
            self.consumer,
            # Every report is believed only if the node whose stream holds it signed it (job_keys: its key).
            partial(report_streams.parse_report, key_of=job_keys.node_key),
            [
                StreamHandler(report_streams.EVENT, "task event", self._apply_task_events),
                StreamHandler(report_streams.COMMAND, "fleet task report", self._apply_fleet_task_reports),
                StreamHandler(report_streams.COMPONENT, "component report", self._apply_component_reports),
                StreamHandler(report_streams.INSTANCE, "instance report", self._apply_instance_reports),
            ],
            node_presence.known_ids,
        )

    def _alert_sender(self, settings: Settings) -> alert_delivery.Sender | None:
        """The webhook sender, when URLs are configured: a thread of its own, so no POST ever delays a tick."""
        urls = alert_delivery.parse_urls(settings.alert_urls)
        alert_events.configure(urls)  # the duties raise most alerts: recorded only when they will be sent
        if not urls:
            return None
        if not settings.alert_secret_file:
            raise ValueError("alert URLs need a secret file (--alert-secret-file)")
        with open(settings.alert_secret_file, "rb") as f:
            secret = f.read().strip()
        # Only while this manager holds the duties lock, as every other duty.
        return alert_delivery.Sender(urls, secret, settings.alert_max_attempts, lambda: self._holding)

    # -- the agents' reports (services.report_batches: one transaction, acks after the commit) -----
    def _apply_task_events(self, batch: list[dict[str, Any]]) -> None:
        report_batches.apply_and_acknowledge(self.redis, task_events.KIND, batch)

    def _apply_fleet_task_reports(self, batch: list[dict[str, Any]]) -> None:
        # The ?wait callers are woken after the commit too, so they read the change.
        changed = report_batches.apply_and_acknowledge(
            self.redis, fleet_task_reports.KIND, batch, fleet_task_reports.tell_changed
        )
        # After the commit: a step whose task just ended starts the next wave in this same pass.
        workflows.advance_for_tasks(self.redis, changed, self.settings.offline_after_intervals)

    def _apply_component_reports(self, batch: list[dict[str, Any]]) -> None:
        self._send(report_batches.apply_and_acknowledge(self.redis, self.component_reports, batch))

    def _apply_instance_reports(self, batch: list[dict[str, Any]]) -> None:
        self._send_app_jobs(report_batches.apply_and_acknowledge(self.redis, self.instance_reports, batch))

    def _send_app_jobs(self, jobs: app_state.Jobs) -> None:
        """App instance jobs, after their commit; a run that Redis fails to take is sent again (resend_overdue)."""
        if not jobs:
            return
        try:
            app_state.send(self.redis, jobs)
        except RedisError as exc:
            logger.error("duties: %d run and %d stop instance jobs not sent: %s", len(jobs.runs), len(jobs.stops), exc)

    def _apps_upkeep(self) -> None:
        """Instances on offline nodes lost, apps with work reconciled (all of them now and then), runs resent."""
        offline_after = self.settings.offline_after_intervals
        app_upkeep.mark_lost(self.redis, offline_after)
        everything = self.app_recheck.due(time.monotonic())
        self._send_app_jobs(app_upkeep.reconcile_apps(self.redis, offline_after, everything))
        if time.monotonic() >= self._next_app_resend:
            self._next_app_resend = time.monotonic() + min(RESEND_CHECK_EVERY, self.settings.component_resend_seconds)
            self._send_app_jobs(app_upkeep.resend_overdue(self.settings.component_resend_seconds))

    def _send(self, jobs: Jobs) -> None:
        """Component jobs, after their commit; when Redis fails now, the Resender sends them later."""
        if not jobs:
            return
        try:
            businesses.send(self.redis, jobs)
        except RedisError as exc:
            logger.error(
                "duties: %d deploy and %d stop jobs not sent, to be sent again: %s",
                len(jobs.deploys),
                len(jobs.stops),
                exc,
            )

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Run the duties in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="corral-duties", daemon=True)
        self._thread.start()
        if self.alerts is not None:
            self.alerts.start()
        self.processors.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it."""
        self._stop.set()
        if self.alerts is not None:
            self.alerts.stop(timeout)
        self.processors.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the duties thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def holds_lock(self) -> bool:
        """Whether this instance held the duties lock at its last renewal."""
        return self._holding

    def run(self) -> None:
        """The loop; returns when stop() is called."""
        logger.info("duties started (consumer %s)", self.consumer)
        backoff = 0.5
        outage = False
        next_check = 0.0
        try:
            while not self._stop.is_set():
                try:
                    db.connect()
                    if not self._hold_lock():
                        self._stop.wait(self.tick)
                        continue
                    started = time.monotonic()
                    if started >= next_check:
                        next_check = started + self.tick
                        self._every_tick()
                    block = max(10, int(min(self.block_ms, (next_check - time.monotonic()) * 1000)))
                    self.streams.consume(block)
                    took = time.monotonic() - started
                    if took > LOCK_TTL_MS / 2000:
                        # The lock is renewed once per pass: a pass this slow lets another host take the duties.
                        logger.warning("duties: one pass took %.1f s (the lock lasts %d s)", took, LOCK_TTL_MS // 1000)
                    if outage:
                        logger.info("duties: redis reachable again (consumer %s)", self.consumer)
                        outage, backoff = False, 0.5
                except RedisError as exc:
                    if not outage:
                        logger.warning("duties: redis unavailable, retrying (consumer %s): %s", self.consumer, exc)
                        outage = True
                    self._holding = False
                    self.schedules.stop()
                    self.streams.reset()
                    self._stop.wait(backoff)
                    # At most a tick: Redis restarted by the manager is back within a second or two, and
                    # until the duties hold their lock again reports wait and liveness is not judged.
                    backoff = min(backoff * 2, self.tick)
                except Exception:
                    logger.exception("duties: unexpected error (consumer %s); going on", self.consumer)
                    db.close()
                    self._stop.wait(1.0)
        finally:
            self.schedules.stop()
            self.streams.reset()  # closes its pub/sub connection
            self._release_lock()
            db.close()
            logger.info("duties stopped (consumer %s)", self.consumer)

    # -- the lock -------------------------------------------------------------------------------
    def _hold_lock(self) -> bool:
        held = bool(self.redis.eval(_LOCK_SCRIPT, 1, keys.DUTIES_LOCK, self.lock_token, str(LOCK_TTL_MS)))
        if held != self._holding:
            if held:
                logger.info("duties lock %s taken by %s", keys.DUTIES_LOCK, self.lock_token)
                grace = heartbeat.resume_judging(
                    self.redis, node_presence.known_ids(), self.settings.offline_after_intervals
                )
                if grace is not None:
                    logger.info(
                        "duties: node liveness was not judged for %.1f s; nodes online then get one full offline "
                        "window before they are judged again",
                        grace[1] - grace[0],
                    )
            else:
                logger.warning("duties lock %s held elsewhere; %s waits", keys.DUTIES_LOCK, self.lock_token)
                self.schedules.stop()
                self.streams.redo_pending()
            self._holding = held
        return held

    def _release_lock(self) -> None:
        try:
            self.redis.eval(_UNLOCK_SCRIPT, 1, keys.DUTIES_LOCK, self.lock_token)
        except RedisError as exc:
            logger.warning("duties lock %s not released by %s: %s", keys.DUTIES_LOCK, self.lock_token, exc)

    # -- periodic work --------------------------------------------------------------------------
    def _every_tick(self) -> None:
        """Node statuses first: the fleet task checks below read them."""
        node_liveness.refresh_statuses(self.redis, self.settings.offline_after_intervals)
        heartbeat.mark_judged(self.redis)
        run_id = str(cast(dict[str, Any], self.redis.info("server")).get("run_id") or "")
        if self._redis_run_id and run_id != self._redis_run_id:
            # A restarted Redis may have lost the last writes before it died (appendfsync everysec, a
            # failover to a replica that lagged): the jobs of hosts that never started among them.
            logger.warning("duties: Redis restarted (run id %s, was %s)", run_id, self._redis_run_id)
            fleet_task_upkeep.send_pending_again(self.redis, self.settings.task_deadline_slack_seconds)
        self._redis_run_id = run_id
        fleet_task_upkeep.fail_hosts_on_offline_nodes()
        fleet_task_upkeep.enforce_deadlines(self.settings.task_deadline_slack_seconds)
        # Every workflow not ended: tasks ended by a deadline or an offline node, and whatever a restart left.
        workflows.advance_open(self.redis, self.settings.offline_after_intervals)
        self._send(
            business_upkeep.fail_components_on_offline_nodes(
                self.redis, self.settings.offline_after_intervals, self.settings.component_stop_grace_seconds
            )
        )
        self._apps_upkeep()
        if time.monotonic() >= self._next_resend:
            self._next_resend = time.monotonic() + min(RESEND_CHECK_EVERY, self.settings.component_resend_seconds)
            self._send(self.resender.overdue(self.settings.component_stop_grace_seconds))
        every = self.settings.node_metrics_every_seconds
        if every > 0 and time.monotonic() >= self._next_node_sample:
            self._next_node_sample = time.monotonic() + every
            node_metrics.sample(self.redis, self.settings.offline_after_intervals)
        if time.monotonic() >= self._next_metrics_prune:
            self._next_metrics_prune = time.monotonic() + METRICS_PRUNE_EVERY
            business_upkeep.prune_metrics(self.settings.component_metrics_retention_hours)
            node_metrics.prune(self.settings.node_metrics_retention_hours)
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY
            fleet_task_upkeep.prune(self.redis, self.settings.task_retention_days)
            workflow_actions.prune(self.settings.task_retention_days)
            alert_delivery.prune()
        self.schedules.sync()
