"""The schedule runner: APScheduler in the duties of the one manager holding the duties lock.

Job store: APScheduler's MemoryJobStore, rebuilt from the Schedule table at every start and re-synced
every duties tick. The only persistent store that fits here (no SQLAlchemy) is RedisJobStore, and it
pickles job state into Redis: agents hold credentials to that same Redis, so unpickling from it would
let any agent run code in the manager. The Schedule table already is the truth (definition, paused,
last run), which makes the in-memory store as persistent as a job store: the schedules survive a
restart and their next run is recomputed from it, with a tick missed during the restart run once
(coalesced) if it is within the misfire grace time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from redis import Redis

from manager_api import db
from manager_api.models import Schedule
from manager_api.services.schedules import actions as schedules
from shared.schedule_triggers import aware, next_fire, trigger_of

logger = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS = 60
"""A tick missed by up to this long (busy manager, restart, lock handover) still fires, once."""

FIRING_THREADS = 4
"""Firings that may run at once (each is one fleet task creation, a few milliseconds)."""


class ScheduleRunner:
    """Holds one APScheduler job per active schedule while this manager runs the duties."""

    def __init__(self, redis: Redis, offline_after_intervals: int, may_fire: Callable[[], bool]) -> None:
        self.redis = redis
        self.offline_after_intervals = offline_after_intervals
        self.may_fire = may_fire  # the duties lock is still ours: never fire from a manager that lost it
        self._scheduler: BackgroundScheduler | None = None
        self._versions: dict[str, int] = {}

    @property
    def running(self) -> bool:
        """Whether the scheduler runs (this manager holds the duties lock)."""
        return self._scheduler is not None

    def start(self) -> None:
        """Start an empty scheduler; the next sync() fills it from the Schedule table."""
        if self._scheduler is not None:
            return
        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(FIRING_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
            timezone=UTC,
        )
        scheduler.start()
        self._scheduler = scheduler
        self._versions = {}
        logger.info("scheduler started")

    def stop(self) -> None:
        """Stop the scheduler (lock lost, Redis gone, shutdown); firings in progress finish."""
        if self._scheduler is None:
            return
        self._scheduler.shutdown(wait=False)
        self._scheduler = None
        self._versions = {}
        logger.info("scheduler stopped")

    def sync(self) -> None:
        """Bring the jobs in line with the Schedule table, then store their next run times."""
        self.start()
        scheduler = self._scheduler
        assert scheduler is not None
        wanted = schedules.definitions()
        for schedule_id in [sid for sid in self._versions if wanted.get(sid) != self._versions[sid]]:
            scheduler.remove_job(schedule_id)
            del self._versions[schedule_id]
            logger.info("schedule %s: job removed (paused, deleted or changed)", schedule_id)
        for schedule_id, version in wanted.items():
            if schedule_id not in self._versions:
                self._add(schedule_id, version)
        next_runs = {job.id: job.next_run_time for job in scheduler.get_jobs()}
        schedules.record_next_runs(next_runs)

    def _add(self, schedule_id: str, version: int) -> None:
        assert self._scheduler is not None
        row = Schedule.get_or_none(Schedule.id == schedule_id)
        if row is None or row.version != version:
            return  # changed since definitions() was read: the next sync picks it up
        trigger = trigger_of(row.cron, row.interval, row.created_at)
        now = datetime.now(UTC)
        # Never before the last firing (it happened, maybe on another manager), nor further back than the
        # grace time; an earlier stored next run that is still within grace fires once, coalesced.
        after = now - timedelta(seconds=MISFIRE_GRACE_SECONDS)
        if row.next_run_at is not None:
            # A hair earlier: the trigger works in float timestamps and must find the stored time itself.
            after = max(after, aware(row.next_run_at) - timedelta(milliseconds=1))
        if row.last_run_at is not None:
            after = max(after, aware(row.last_run_at) + timedelta(microseconds=1))
        first = next_fire(trigger, after)
        if first is None:
            return
        self._scheduler.add_job(
            self._fire,
            trigger=trigger,
            args=(schedule_id, version),
            id=schedule_id,
            name=f"schedule {row.name}",
            next_run_time=first,
        )
        self._versions[schedule_id] = version
        logger.info("schedule %s (%s): job added, next run %s", schedule_id, row.name, first.isoformat())

    def _fire(self, schedule_id: str, version: int) -> None:
        """One tick: runs in an executor thread, with its own database connection."""
        if not self.may_fire():
            logger.warning("schedule %s: tick skipped, this manager no longer holds the duties lock", schedule_id)
            return
        db.connect()
        try:
            schedules.fire(self.redis, schedule_id, version, self.offline_after_intervals)
        except Exception:
            logger.exception("schedule %s: firing failed", schedule_id)
        finally:
            db.close()
