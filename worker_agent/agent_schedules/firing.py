"""Fires this node's agent-side schedules from its own clock: an APScheduler BackgroundScheduler (memory job store)
rebuilt from the held set at start and at every newer set, firing even while the manager or Redis is unreachable.

Each firing runs its command through the CommandRunner under a task id derived from the schedule and the time it
was due, uuid5(FIRING_NAMESPACE, "<schedule id>:<fire time ISO>"): the same firing is always the same task, so a
report sent twice (or a firing seen again after a restart) is one task, and the runner's journal keeps the reports
until the manager acknowledges them. Firings missed while the agent itself was down are not made up (like cron):
a tick late by up to MISFIRE_GRACE_SECONDS (a busy host) still fires, once (coalesced).

APScheduler is imported only when the node holds a schedule: an agent without any pays nothing for it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError

from . import schedule_set
from .schedule_set import ScheduleSet

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

logger = logging.getLogger(__name__)

FIRING_NAMESPACE = uuid.UUID("5b1f3c2e-8f0a-4c57-9e43-6a1d2f7b9c10")
"""The uuid5 namespace of the task ids of agent-side firings."""

MISFIRE_GRACE_SECONDS = 30
"""A tick late by up to this long still fires, once; older ones (the agent was down) are skipped."""

Run = Callable[[dict[str, Any]], Any]
"""CommandRunner.run: starts one command (by task id, once) and returns at once."""

KeepScripts = Callable[[list[dict[str, Any]], bool], list[str]]
"""CommandRunner.keep_scripts: caches the set's scripts (fetching them when asked), returns those not had."""


def task_id_of(schedule_id: str, fired_at: datetime) -> str:
    """The task id of one firing: the same schedule and due time always give the same id."""
    return str(uuid.uuid5(FIRING_NAMESPACE, f"{schedule_id}:{fire_time_text(fired_at)}"))


def fire_time_text(fired_at: datetime) -> str:
    """The due time as the report carries it: ISO 8601 in UTC, microseconds included."""
    return fired_at.astimezone(UTC).isoformat(timespec="microseconds")


def _trigger(entry: dict[str, Any]) -> Any:
    from shared.schedule_triggers import trigger_of

    return trigger_of(entry.get("cron"), entry.get("interval"), datetime.fromtimestamp(entry["created_at"], UTC))


class AgentSchedules:
    """Holds the node's set of agent-side schedules and fires them; jobs.sync_agent_schedules delegates here."""

    def __init__(self, data_dir: Path, node_id: str, run: Run, keep_scripts: KeepScripts | None = None) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self._run = run
        self._keep_scripts = keep_scripts
        self._lock = threading.Lock()
        self._held = schedule_set.load(data_dir)
        self._scheduler: BackgroundScheduler | None = None
        self._started = False

    @property
    def version(self) -> int:
        """The version of the held set (0: none ever received)."""
        return self._held.version

    def active(self) -> list[str]:
        """The ids of the schedules firing now (not paused)."""
        with self._lock:
            return [job.id for job in self._scheduler.get_jobs()] if self._scheduler is not None else []

    def start(self) -> AgentSchedules:
        """Start firing the held set (at agent start, before and without joining)."""
        with self._lock:
            self._started = True
            self._rebuild()
            held = self._held
        self._keep(held, fetch=False)  # cached when the set came; kept from pruning (no Redis yet at start)
        if self._held.schedules:
            logger.info(
                "node %s: agent schedules version %d loaded (%d schedules)",
                self.node_id,
                self._held.version,
                len(self._held.schedules),
            )
        return self

    def apply(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Replace the held set with ``payload``'s when newer; returns what became of it."""
        try:
            incoming = ScheduleSet.from_payload(payload)
        except ValidationError as exc:
            logger.error("node %s: agent schedule set refused: %s", self.node_id, exc.messages)
            return {"applied": False, "version": self._held.version, "error": "malformed set"}
        with self._lock:
            if not incoming.newer_than(self._held):
                logger.info(
                    "node %s: agent schedules version %d ignored (holding %d)",
                    self.node_id,
                    incoming.version,
                    self._held.version,
                )
                return {"applied": False, "version": self._held.version}
            schedule_set.save(self.data_dir, incoming)
            self._held = incoming
            if self._started:
                self._rebuild()
        # While Redis is reachable (the set just came through it): the firings then run without it.
        missing = self._keep(incoming, fetch=True)
        paused = sum(1 for entry in incoming.schedules if entry.get("paused"))
        logger.info(
            "node %s: agent schedules version %d applied (%d schedules, %d paused)",
            self.node_id,
            incoming.version,
            len(incoming.schedules),
            paused,
        )
        applied: dict[str, Any] = {"applied": True, "version": incoming.version}
        if missing:
            applied["scripts_unavailable"] = missing
        return applied

    def _keep(self, held: ScheduleSet, fetch: bool) -> list[str]:
        """Have the scripts of ``held``'s schedules cached (paused ones too: a resume needs no Redis either)."""
        if self._keep_scripts is None:
            return []
        scripts = {entry["script"]["digest"]: entry["script"] for entry in held.schedules if entry.get("script")}
        return self._keep_scripts(list(scripts.values()), fetch)

    def close(self) -> None:
        """Stop firing (commands already started go on in the CommandRunner)."""
        with self._lock:
            self._started = False
            self._stop_scheduler()

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def _rebuild(self) -> None:
        """A fresh scheduler from the held set (under the lock); none at all while nothing is active."""
        self._stop_scheduler()
        active = [entry for entry in self._held.schedules if not entry.get("paused")]
        if not active:
            return
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        from .executor import FiringExecutor

        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": FiringExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
            timezone=UTC,
        )
        now = datetime.now(UTC)
        for entry in active:
            try:
                trigger = _trigger(entry)
                first = trigger.get_next_fire_time(None, now)
                if first is None:
                    continue
                scheduler.add_job(
                    partial(self._fire, entry),
                    trigger=trigger,
                    # A placeholder APScheduler's argument check wants: FiringExecutor passes the due time.
                    kwargs={"fired_at": None},
                    id=entry["id"],
                    name=f"agent schedule {entry['name']}",
                    next_run_time=first,
                )
            except ValueError as exc:  # one bad entry (a crontab line this APScheduler refuses) stops no other
                logger.error("node %s: agent schedule %s not fired: %s", self.node_id, entry["id"], exc)
        scheduler.start()
        self._scheduler = scheduler

    def _fire(self, entry: dict[str, Any], fired_at: datetime) -> None:
        """One firing, on a thread of the executor: hand the command to the CommandRunner (it returns at once)."""
        when = fire_time_text(fired_at)
        task_id = task_id_of(entry["id"], fired_at)
        name = entry["name"]
        logger.info(
            "node %s task %s: agent schedule %s (%s) fired for %s", self.node_id, task_id, entry["id"], name, when
        )
        self._run(
            {
                "task_id": task_id,
                "command": entry["command"],
                "script": entry.get("script"),  # run from the cache (fetched when the set arrived)
                "timeout": entry["timeout"],
                "env": entry.get("env") or {},
                "schedule": {
                    "id": entry["id"],
                    "name": entry["name"],
                    "fired_at": when,
                    "command": entry["command"],
                    "timeout": entry["timeout"],
                },
            }
        )
