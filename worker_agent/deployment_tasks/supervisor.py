"""Runs task commands as supervised processes: start, watch, stop, and adopt them after an agent restart.

Every change of a task's state goes through ``_change_state``, which logs the transition, publishes the
event (task_events.py) and saves the record; an event that could not be published is retried from the monitor
thread. Each task this agent spawned also has run states (restarts.py: STARTING, RUNNING, BACKOFF, ...) that
a restart policy drives; the default policy never restarts, so a task that exits is settled at once.
"""

from __future__ import annotations

import logging
import math
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

from shared.states import TaskState

from .. import process_tree
from ..poll_thread import PollThread
from ..state_file import StateFile, change_record, prune_records
from .records import STARTING, TaskRecord, is_safe_task_id
from .restarts import NO_RESTART, RestartPolicy, RunState, RunStates
from .task_events import Publish, TaskEvents

logger = logging.getLogger(__name__)


KEEP_ENDED_SECONDS = 24 * 3600.0
"""How long an ended record is kept so that a redelivered start stays a no-op."""


UNKNOWN_TASK_ERROR = "unknown task on this node"
LOST_ERROR = "ended while the agent was down"


class Supervisor:
    """Owns the task processes of one node and the record of them in ``<data dir>/state.json``."""

    def __init__(
        self,
        data_dir: Path,
        node_id: str,
        publish: Publish,
        poll_interval: float = 0.2,
        redis: Callable[[], Redis | None] | None = None,
        restart_policy: RestartPolicy = NO_RESTART,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()  # children run elsewhere and are handed paths under it
        self.tasks_dir = self.data_dir / "tasks"
        self.node_id = node_id
        self.poll_interval = poll_interval
        self._redis = redis
        self._events = TaskEvents(node_id, publish, redis)
        self._state_file = StateFile(self.data_dir / "state.json", TaskRecord)
        self._lock = threading.RLock()
        self._records: dict[str, TaskRecord] = self._state_file.load()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, psutil.Process] = {}
        # Run states (restart policy, backoff) of the tasks this agent spawned, with the environment to spawn
        # them again; an adopted task has none, so it is never restarted.
        self.restart_policy = restart_policy
        self._runs: dict[str, tuple[RunStates, dict[str, str]]] = {}
        self._stops: dict[str, process_tree.GraceStop] = {}  # on wall time: kill_at outlives an agent restart
        self._last_prune = 0.0
        self._monitor = PollThread(
            "corral-supervisor", self.poll, poll_interval, f"node {node_id}: supervisor", idle=self.idle
        )

    # -- queries -----------------------------------------------------------------------------------

    def record(self, task_id: str) -> TaskRecord | None:
        """The live record of one task (not a copy; read it, do not change it)."""
        with self._lock:
            return self._records.get(task_id)

    def run_state(self, task_id: str) -> RunState | None:
        """The run state of a task this agent spawned; None once it ended, or for a task adopted after a restart."""
        with self._lock:
            return self._runs[task_id][0].state if task_id in self._runs else None

    def running_count(self) -> int:
        """How many tasks have a live process (running or being stopped)."""
        with self._lock:
            return sum(1 for rec in self._records.values() if rec.live)

    def count_by_state(self) -> dict[str, int]:
        """How many tasks the agent keeps a record of, by state (the status port's /metrics)."""
        with self._lock:
            return dict(Counter(rec.state for rec in self._records.values()))

    def task_dir(self, task_id: str) -> Path:
        """Where a task's logs and exit-code file live."""
        return self.tasks_dir / task_id

    # -- start -------------------------------------------------------------------------------------

    def start(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Spawn a task's command unless the task is already known; returns at once."""
        task_id = task["task_id"]
        with self._lock:
            known = self._records.get(task_id)
            if known is not None:
                logger.info("node %s task %s: already known (%s), start ignored", self.node_id, task_id, known.state)
                return {"task_id": task_id, "state": known.state, "pid": known.pid, "started": False}
            rec = TaskRecord(
                task_id=task_id,
                deployment_id=task["deployment_id"],
                name=task.get("name", ""),
                command=task["command"],
            )
            self._records[task_id] = rec
            if not is_safe_task_id(task_id):
                self._change_state(rec, TaskState.FAILED, error=f"task id {task_id!r} cannot name a directory")
                return {"task_id": task_id, "state": rec.state, "pid": None, "started": False}
            # Recorded before spawning: a start redelivered after a crash right here must not run it twice.
            self._save()
            env = {**(task.get("env") or {}), "CORRAL_TASK_ID": task_id, "CORRAL_DEPLOYMENT_ID": rec.deployment_id}
            self._runs[task_id] = (RunStates(f"node {self.node_id} task {task_id}", self.restart_policy), env)
            started = self._spawn(rec)
            return {"task_id": task_id, "state": rec.state, "pid": rec.pid, "started": started}

    def _spawn(self, rec: TaskRecord) -> bool:
        """Spawn a task's command, the first time or again after its backoff; whether it runs (lock held)."""
        runs, env = self._runs[rec.task_id]
        runs.starting()
        try:
            popen = process_tree.spawn(rec.command, self.task_dir(rec.task_id), env)
        except OSError as exc:
            logger.error("node %s task %s: could not start: %s", self.node_id, rec.task_id, exc)
            if runs.spawn_failed(f"could not start: {exc}", time.time()) is not RunState.BACKOFF:
                self._change_state(rec, TaskState.FAILED, error=f"could not start: {exc}")
            return False
        self._children[rec.task_id] = popen
        runs.running(time.time())
        self._change_state(
            rec,
            TaskState.RUNNING,
            pid=popen.pid,
            create_time=process_tree.create_time(popen.pid),
            started_at=rec.started_at or time.time(),
        )
        return True

    # -- stop --------------------------------------------------------------------------------------

    def stop(self, task_ids: Iterable[str], grace_seconds: float, deployment_id: str = "") -> dict[str, str]:
        """SIGTERM each task's whole process tree; the monitor sends SIGKILL after ``grace_seconds``."""
        outcome: dict[str, str] = {}
        with self._lock:
            for task_id in task_ids:
                rec = self._records.get(task_id)
                if rec is None:
                    # Tell the manager, which would otherwise wait for this task forever. Kept as a
                    # record so a late start stays a no-op.
                    rec = TaskRecord(task_id=task_id, deployment_id=deployment_id)
                    self._records[task_id] = rec
                    self._change_state(rec, TaskState.STOPPED, error=UNKNOWN_TASK_ERROR, ended_at=time.time())
                    outcome[task_id] = "unknown"
                elif rec.state == TaskState.RUNNING and rec.pid is not None:
                    self._begin_stop(rec, grace_seconds)
                    outcome[task_id] = "stopping"
                else:
                    logger.info("node %s task %s: stop ignored, task is %s", self.node_id, task_id, rec.state)
                    outcome[task_id] = rec.state.lower()
        return outcome

    def _begin_stop(self, rec: TaskRecord, grace_seconds: float) -> None:
        assert rec.pid is not None
        if rec.task_id in self._runs:
            self._runs[rec.task_id][0].stopping()
        known = self._stops[rec.task_id].targets if rec.task_id in self._stops else None
        now = time.time()
        stop = self._stops[rec.task_id] = process_tree.GraceStop.prepare(
            rec.pid, grace_seconds, now, process_tree.collect_tree(rec.pid, rec.pid, known)
        )
        rec.state = TaskState.STOPPING.value
        rec.stop_requested_at = now
        rec.kill_at = stop.kill_at
        self._save()  # STOPPING is the agent's own business: saved, not published
        self._monitor.wake()
        logger.info(
            "node %s task %s: RUNNING -> STOPPING, SIGTERM to %d processes, SIGKILL after %.1fs",
            self.node_id,
            rec.task_id,
            len(stop.targets),
            grace_seconds,
        )
        stop.terminate()

    # -- watch -------------------------------------------------------------------------------------

    def start_monitor(self) -> None:
        """Start the one thread that watches every task process."""
        self._monitor.start()

    def idle(self) -> bool:
        """Whether no task runs, stops or waits for its event to be published: nothing to watch closely."""
        with self._lock:
            return not self._events.unacked and all(
                rec.reported and rec.state not in (TaskState.RUNNING, TaskState.STOPPING, STARTING)
                for rec in self._records.values()
            )

    def close(self) -> None:
        """Stop watching; task processes are left running (they outlive the agent)."""
        self._monitor.close()
        with self._lock:
            process_tree.leave_running(self._children.values())
            self._children.clear()

    def poll(self) -> None:
        """One round of watching: settle exited tasks, escalate stops, retry unpublished events, prune."""
        with self._lock:
            now = time.time()
            for rec in list(self._records.values()):
                if rec.state == TaskState.RUNNING:
                    self._check_running(rec)
                elif rec.state == TaskState.STOPPING:
                    self._check_stopping(rec, now)
            for task_id, (runs, _env) in list(self._runs.items()):
                if runs.due(now):
                    self._spawn(self._records[task_id])
            if self._events.retry_unreported(self._records):
                self._save()
            if self._events.check_acknowledgments(self._records):
                self._save()
            if now - self._last_prune > 60:
                self._prune(now)

    def _check_running(self, rec: TaskRecord) -> None:
        runs = self._runs[rec.task_id][0] if rec.task_id in self._runs else None
        if runs is not None and runs.state is RunState.BACKOFF:
            return  # nothing runs until its restart
        ended, code = self._exit_status(rec)
        if not ended:
            return
        if runs is not None and runs.exited(code, time.time()) is RunState.BACKOFF:
            return  # spawned again once its backoff is over (poll); the record keeps reading RUNNING meanwhile
        if code is None:
            self._change_state(rec, TaskState.FAILED, error="task process ended without an exit status")
        elif code == 0:
            self._change_state(rec, TaskState.COMPLETED, exit_code=0)
        else:
            self._change_state(rec, TaskState.FAILED, exit_code=code, error=self._failure(rec, code))

    def _failure(self, rec: TaskRecord, code: int) -> str:
        """Why a task failed, in words: its exit code and the tail of its stderr (`sh: nosuch: not found`)."""
        return process_tree.with_stderr_tail(f"exited with code {code}", self.task_dir(rec.task_id))

    def _check_stopping(self, rec: TaskRecord, now: float) -> None:
        assert rec.pid is not None
        stop = self._stops.get(rec.task_id)
        if stop is None:  # begun by the previous agent: its targets are unknown, its kill_at recorded
            kill_at = rec.kill_at if rec.kill_at is not None else math.inf
            stop = self._stops[rec.task_id] = process_tree.GraceStop(rec.pid, kill_at)
        was_killed = stop.killed
        leftovers = stop.escalate(now)
        if leftovers and not was_killed:
            logger.warning(
                "node %s task %s: grace over, SIGKILL to %d processes", self.node_id, rec.task_id, len(leftovers)
            )
        ended, code = self._exit_status(rec)
        if not ended:
            return
        remaining = stop.remaining()
        if remaining and not stop.given_up(now):
            return  # the wrapper is gone but part of the tree still runs: wait for it (or for SIGKILL)
        error = None
        if remaining:
            error = "processes survived SIGKILL: " + ", ".join(str(p.pid) for p in remaining)
        self._change_state(rec, TaskState.STOPPED, exit_code=stop.exit_code(code), error=error)

    def _exit_status(self, rec: TaskRecord) -> tuple[bool, int | None]:
        """Whether the task's wrapper process has ended, and its exit code if known."""
        return process_tree.wrapper_exit_status(rec.task_id, self._children, self._adopted, self.task_dir(rec.task_id))

    def _read_exit_file(self, task_id: str) -> int | None:
        return process_tree.read_exit_code(self.task_dir(task_id))

    # -- restart -----------------------------------------------------------------------------------

    def recover(self) -> None:
        """After an agent (re)start: adopt live task processes, settle those that ended meanwhile."""
        with self._lock:
            for rec in list(self._records.values()):
                if not rec.live:
                    if self._redis is not None and rec.reported and not rec.acked:
                        rec.reported = False  # sent maybe, never acknowledged: again
                    continue
                if rec.state == STARTING or rec.pid is None:
                    self._change_state(rec, TaskState.LOST, error="the agent stopped while starting the task")
                    continue
                proc = process_tree.find_process(rec.pid, rec.create_time)
                if proc is not None:
                    self._adopted[rec.task_id] = proc
                    logger.info("node %s task %s: adopted pid %s (%s)", self.node_id, rec.task_id, rec.pid, rec.state)
                    if rec.state == TaskState.RUNNING:
                        self._change_state(rec, TaskState.RUNNING)  # re-announce: the manager may have missed it
                    continue
                code = self._read_exit_file(rec.task_id)
                if rec.state == TaskState.STOPPING:
                    self._change_state(rec, TaskState.STOPPED, exit_code=code)
                elif code is None:
                    self._change_state(rec, TaskState.LOST, error=LOST_ERROR)
                elif code == 0:
                    self._change_state(rec, TaskState.COMPLETED, exit_code=0)
                else:
                    self._change_state(rec, TaskState.FAILED, exit_code=code, error=self._failure(rec, code))
            self._events.retry_unreported(self._records)
            self._save()

    # -- state changes and events ------------------------------------------------------------------

    def _change_state(self, rec: TaskRecord, state: TaskState, **changes: Any) -> None:
        """The one way a task changes state: update, log, publish, save."""
        old = change_record(rec, state.value, changes)
        if state.ended:
            rec.ended_at = rec.ended_at or time.time()
            self._stops.pop(rec.task_id, None)
            self._adopted.pop(rec.task_id, None)
            runs = self._runs.pop(rec.task_id, None)
            if runs is not None and state is TaskState.STOPPED:
                runs[0].stopped()
        log = logger.warning if state in (TaskState.FAILED, TaskState.LOST) else logger.info
        log(
            "node %s task %s: %s -> %s (deployment %s, pid %s, exit code %s%s)",
            self.node_id,
            rec.task_id,
            old,
            rec.state,
            rec.deployment_id or "-",
            rec.pid,
            rec.exit_code,
            f", error: {rec.error}" if rec.error else "",
        )
        rec.reported = self._events.publish(rec)
        self._save()
        if state is TaskState.RUNNING or not rec.reported:
            self._monitor.wake()  # something to watch (or to publish again) at the busy interval

    def _prune(self, now: float) -> None:
        self._last_prune = now
        cutoff = now - KEEP_ENDED_SECONDS
        if prune_records(
            self._records,
            lambda rec: not rec.live and rec.reported and (rec.ended_at or now) < cutoff,
            "task",
            self.node_id,
        ):
            self._save()

    def _save(self) -> None:
        self._state_file.save(self._records)
