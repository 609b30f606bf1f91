"""Runs task commands as supervised processes: start, watch, stop, and adopt them after an agent restart.

Every change of a task's state goes through ``_change_state``, which logs the transition, publishes the
event and saves the record; an event that could not be published is retried from the monitor thread.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
from redis import Redis
from redis.exceptions import RedisError

from shared import acks
from shared.states import TaskState

from .. import process_tree
from ..poll_thread import PollThread
from ..report_acks import PendingAcks
from ..state_file import StateFile
from .records import STARTING, TaskRecord, is_safe_task_id

logger = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], object]
"""Appends one task event to the events stream; raises when it could not."""

KEEP_ENDED_SECONDS = 24 * 3600.0
"""How long an ended record is kept so that a redelivered start stays a no-op."""

SIGKILL_GIVE_UP_SECONDS = 10.0
"""After SIGKILL, how long to wait for the tree to vanish before reporting the task stopped anyway."""

PUBLISH_RETRY_SECONDS = 2.0
"""Pause between two attempts to publish held-back events while Redis is unreachable."""

_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []
"""Children a closed Supervisor left running on purpose; kept so Popen.__del__ never warns about them."""

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
    ) -> None:
        self.data_dir = Path(data_dir).absolute()  # children run elsewhere and are handed paths under it
        self.tasks_dir = self.data_dir / "tasks"
        self.node_id = node_id
        self.poll_interval = poll_interval
        self._publish = publish
        # Given Redis, each event waits for the manager's acknowledgment and goes again until then (shared.acks).
        self._redis = redis
        self._unacked = PendingAcks(node_id, acks.TASK)
        self._state_file = StateFile(self.data_dir / "state.json", TaskRecord)
        self._lock = threading.RLock()
        self._records: dict[str, TaskRecord] = self._state_file.load()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, psutil.Process] = {}
        self._stop_targets: dict[str, list[psutil.Process]] = {}
        self._killed: set[str] = set()
        self._publish_failing = False
        self._retry_after = 0.0
        self._last_prune = 0.0
        self._monitor = PollThread(
            "corral-supervisor", self.poll, poll_interval, f"node {node_id}: supervisor", idle=self.idle
        )

    # -- queries -----------------------------------------------------------------------------------

    def record(self, task_id: str) -> TaskRecord | None:
        """The live record of one task (not a copy; read it, do not change it)."""
        with self._lock:
            return self._records.get(task_id)

    def running_count(self) -> int:
        """How many tasks have a live process (running or being stopped)."""
        with self._lock:
            return sum(1 for rec in self._records.values() if rec.live)

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
            try:
                env = {**(task.get("env") or {}), "CORRAL_TASK_ID": task_id, "CORRAL_DEPLOYMENT_ID": rec.deployment_id}
                popen = process_tree.spawn(rec.command, self.task_dir(task_id), env)
            except OSError as exc:
                logger.error("node %s task %s: could not start: %s", self.node_id, task_id, exc)
                self._change_state(rec, TaskState.FAILED, error=f"could not start: {exc}")
                return {"task_id": task_id, "state": rec.state, "pid": None, "started": False}
            self._children[task_id] = popen
            self._change_state(
                rec,
                TaskState.RUNNING,
                pid=popen.pid,
                create_time=process_tree.create_time(popen.pid),
                started_at=time.time(),
            )
            return {"task_id": task_id, "state": rec.state, "pid": rec.pid, "started": True}

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
        targets = process_tree.collect_tree(rec.pid, rec.pid, self._stop_targets.get(rec.task_id))
        self._stop_targets[rec.task_id] = targets
        now = time.time()
        rec.state = TaskState.STOPPING.value
        rec.stop_requested_at = now
        rec.kill_at = now + grace_seconds
        self._save()  # STOPPING is the agent's own business: saved, not published
        self._monitor.wake()
        logger.info(
            "node %s task %s: RUNNING -> STOPPING, SIGTERM to %d processes, SIGKILL after %.1fs",
            self.node_id,
            rec.task_id,
            len(targets),
            grace_seconds,
        )
        process_tree.signal_tree(targets, rec.pid, signal.SIGTERM)

    # -- watch -------------------------------------------------------------------------------------

    def start_monitor(self) -> None:
        """Start the one thread that watches every task process."""
        self._monitor.start()

    def idle(self) -> bool:
        """Whether no task runs, stops or waits for its event to be published: nothing to watch closely."""
        with self._lock:
            return not self._unacked and all(
                rec.reported and rec.state not in (TaskState.RUNNING, TaskState.STOPPING, STARTING)
                for rec in self._records.values()
            )

    def close(self) -> None:
        """Stop watching; task processes are left running (they outlive the agent)."""
        self._monitor.close()
        with self._lock:
            _LEFT_RUNNING.extend(self._children.values())
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
            self._retry_unreported()
            self._check_acknowledgments()
            if now - self._last_prune > 60:
                self._prune(now)

    def _check_running(self, rec: TaskRecord) -> None:
        ended, code = self._exit_status(rec)
        if not ended:
            return
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
        targets = self._stop_targets.get(rec.task_id, [])
        if rec.kill_at is not None and now >= rec.kill_at:
            leftovers = process_tree.collect_tree(rec.pid, rec.pid, targets)
            if leftovers:
                if rec.task_id not in self._killed:
                    logger.warning(
                        "node %s task %s: grace over, SIGKILL to %d processes",
                        self.node_id,
                        rec.task_id,
                        len(leftovers),
                    )
                self._killed.add(rec.task_id)
                process_tree.signal_tree(leftovers, rec.pid, signal.SIGKILL)
        ended, code = self._exit_status(rec)
        if not ended:
            return
        remaining = [p for p in targets if process_tree.is_alive(p)] or process_tree.group_members(rec.pid)
        give_up = rec.kill_at is not None and now >= rec.kill_at + SIGKILL_GIVE_UP_SECONDS
        if remaining and not give_up:
            return  # the wrapper is gone but part of the tree still runs: wait for it (or for SIGKILL)
        if code is None:
            # Only a signal ends the wrapper without its exit-code file; assume ours.
            code = -(signal.SIGKILL if rec.task_id in self._killed else signal.SIGTERM)
        error = None
        if remaining:
            error = "processes survived SIGKILL: " + ", ".join(str(p.pid) for p in remaining)
        self._change_state(rec, TaskState.STOPPED, exit_code=code, error=error)

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
            self._retry_unreported()
            self._save()

    # -- state changes and events ------------------------------------------------------------------

    def _change_state(self, rec: TaskRecord, state: TaskState, **changes: Any) -> None:
        """The one way a task changes state: update, log, publish, save."""
        old = rec.state
        for name, value in changes.items():
            setattr(rec, name, value)
        rec.state = state.value
        if state.ended:
            rec.ended_at = rec.ended_at or time.time()
            self._stop_targets.pop(rec.task_id, None)
            self._killed.discard(rec.task_id)
            self._adopted.pop(rec.task_id, None)
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
        rec.reported = self._try_publish(rec)
        self._save()
        if state is TaskState.RUNNING or not rec.reported:
            self._monitor.wake()  # something to watch (or to publish again) at the busy interval

    def _event(self, rec: TaskRecord) -> dict[str, Any]:
        return {
            "task_id": rec.task_id,
            "deployment_id": rec.deployment_id,
            "node_id": self.node_id,
            "state": rec.state,
            "at": time.time(),
            "pid": rec.pid,
            "exit_code": rec.exit_code,
            "started_at": rec.started_at,
            "error": rec.error,
        }

    def _try_publish(self, rec: TaskRecord) -> bool:
        event = self._event(rec)
        try:
            self._publish(event)
        except Exception as exc:
            if not self._publish_failing:
                logger.warning(
                    "node %s task %s: could not publish %s event, will retry: %s",
                    self.node_id,
                    rec.task_id,
                    rec.state,
                    exc,
                )
            self._publish_failing = True
            return False
        if self._publish_failing:
            logger.info("node %s task %s: publishing events again", self.node_id, rec.task_id)
            self._publish_failing = False
        if self._redis is not None:
            rec.acked = False
            for state in TaskState:  # an older state's event needs no acknowledgment any more
                if state.value != rec.state:
                    self._unacked.forget(f"{rec.task_id}:{state.value}")
            self._unacked.sent(f"{rec.task_id}:{rec.state}", event)
        return True

    def _check_acknowledgments(self) -> None:
        """Now and then while events wait: note the acknowledged ones, publish again those due (lock held)."""
        redis = self._redis() if self._redis is not None else None
        if redis is None or not self._unacked.check_due():
            return
        try:
            acknowledged, again = self._unacked.check(redis)
        except RedisError as exc:
            logger.warning("node %s: could not read acknowledgments of task events, will retry: %s", self.node_id, exc)
            return
        for name in acknowledged:
            rec = self._records.get(name.rpartition(":")[0])
            if rec is not None and f"{rec.task_id}:{rec.state}" == name:
                rec.acked = True
        for event in again:
            rec = self._records.get(event["task_id"])
            if rec is not None and rec.state == event["state"]:
                rec.reported = False  # _retry_unreported publishes it again, in order
        if acknowledged:
            self._save()

    def _retry_unreported(self) -> None:
        if time.monotonic() < self._retry_after:
            return
        changed = False
        for rec in self._records.values():
            if rec.reported or rec.state == STARTING or rec.state == TaskState.STOPPING:
                continue
            if not self._try_publish(rec):
                # Still failing: keep the order, and do not hold the lock on a dead Redis every round.
                self._retry_after = time.monotonic() + PUBLISH_RETRY_SECONDS
                break
            rec.reported = True
            changed = True
        if changed:
            self._save()

    def _prune(self, now: float) -> None:
        self._last_prune = now
        old = [
            tid
            for tid, rec in self._records.items()
            if not rec.live and rec.reported and (rec.ended_at or now) < now - KEEP_ENDED_SECONDS
        ]
        for tid in old:
            del self._records[tid]
        if old:
            logger.info("node %s: pruned %d ended task records", self.node_id, len(old))
            self._save()

    def _save(self) -> None:
        self._state_file.save(self._records)
