"""Runs fleet task commands (jobs.RUN_COMMAND): spawn, stream output, enforce the deadline, cancel, report.

A CommandRunner has two threads: the OutputReader, which reads every pipe (one selector) and watches exits,
deadlines and kills, and the publisher, which every FLUSH_SECONDS appends the new output lines and publishes
the reports in order; only the publisher talks to Redis, so an unreachable Redis never delays a kill.
A report that cannot be published (Redis down) is held and retried, and a final report is sent again until the
manager acknowledges it (report_acks: Redis may lose what it took); the record of each command is kept in the
journal ``<data dir>/commands.jsonl`` so a redelivered RUN_COMMAND stays a no-op and a restarted agent can kill
what a command left behind.
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

from shared import heartbeat, secret_env
from shared.states import HostRunStatus

from .. import process_tree
from ..poll_thread import PollThread
from ..state_file import JOURNAL_SYNC_SECONDS, prune_records
from .output import OutputReader
from .publish import CommandPublisher, KeySource, RedisSource
from .records import CommandRecord, RunningCommand, command_journal
from .recovery import NODE_ENV, CommandRecovery
from .script_cache import ScriptCache, ScriptUnavailable

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05
"""Longest time an output line waits before it is appended to the live output stream."""

EXIT_RECHECK_SECONDS = 0.002
"""When a command's output ended, how soon to look again for its exit (it is usually a matter of microseconds);
the reader is woken by the exit itself where pidfds exist (OutputReader.watch_exit), this is the fallback."""

KILL_GRACE_SECONDS = 0.5
"""Between SIGTERM and SIGKILL when a command times out or is canceled (cancel must land within a second)."""

PIPE_GIVE_UP_SECONDS = 2.0
"""After SIGKILL, how long to wait for the pipes a process outside the group may still hold open."""

IDLE_WAKE_SECONDS = 60.0
"""With no command running, the publisher sleeps this long (or until woken): an idle agent costs nothing."""

KEEP_ENDED_SECONDS = 24 * 3600.0
"""How long an ended command's record is kept so that a redelivered RUN_COMMAND stays a no-op."""


EXPIRED_ERROR = "expired: it reached this node after its deadline, not run"
"""A RUN_COMMAND taken off the queue after its deadline (a backlog, a worker that reconnected late)."""


class CommandRunner(CommandRecovery):
    """Owns the fleet commands of one node; the agent builds one, jobs.py delegates to it."""

    def __init__(self, data_dir: Path, node_id: str, redis: RedisSource, job_key: KeySource = lambda: None) -> None:
        self.data_dir = Path(data_dir).absolute()  # children run elsewhere and are handed paths under it
        self.node_id = node_id
        self._redis = redis
        self._job_key = job_key
        self._clock = heartbeat.RedisClock()
        self._journal = command_journal(self.data_dir)
        self._scripts = ScriptCache(self.data_dir, node_id, redis)
        self._kept_scripts: frozenset[str] = frozenset()  # digests the agent-side schedules run: never pruned
        self._publisher = CommandPublisher(
            node_id, redis, self.data_dir / "command-reports", self._published, job_key, self._acknowledged
        )
        self._lock = threading.RLock()
        self._records: dict[str, CommandRecord] = self._journal.load()
        self._running: dict[str, RunningCommand] = {}
        self._last_prune = 0.0
        self._marked: set[str] = set()  # task ids of records marked reported or acked since the last save
        self._publisher_thread = PollThread(
            "corral-commands",
            self.poll,
            FLUSH_SECONDS,
            f"node {node_id}: command runner",
            wait=self._next_wait,
            final_round=True,
            join_seconds=10,
        )
        self._wake = self._publisher_thread.wake
        self._reader = OutputReader(node_id, self._wake, self.watch)
        self._started = False

    # -- queries -----------------------------------------------------------------------------------

    def record(self, task_id: str) -> CommandRecord | None:
        """The live record of one command (read it, do not change it)."""
        with self._lock:
            return self._records.get(task_id)

    def running_count(self) -> int:
        """How many commands run right now."""
        with self._lock:
            return sum(1 for run in self._running.values() if run.final is None)

    # -- jobs --------------------------------------------------------------------------------------

    def run(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Spawn one fleet task's command unless this node already ran it or its deadline passed; returns at once."""
        task_id = request["task_id"]
        left = self._time_left(request.get("deadline"))
        with self._lock:
            known = self._records.get(task_id)
            if known is not None:
                logger.info("node %s task %s: command already %s, run ignored", self.node_id, task_id, known.status)
                return {"task_id": task_id, "status": known.status, "pid": known.pid, "started": False}
            rec = CommandRecord(
                task_id=task_id,
                command=request["command"],
                timeout=float(request["timeout"]),
                schedule=request.get("schedule"),  # an agent-side firing (agent_schedules)
            )
            self._records[task_id] = rec
            if left is not None and left <= 0:
                # The manager gives up on the host at the deadline (plus a slack): never start what it gave up on.
                self._end(rec, HostRunStatus.TIMED_OUT, error_message=f"{EXPIRED_ERROR} ({-left:.1f} s late)")
                self._publisher.add(self._report(rec))
                self._wake()
                return {"task_id": task_id, "status": rec.status, "pid": None, "started": False}
            try:
                # Opened only now, into the child's environment: never logged, never in the journal.
                secrets = secret_env.open_sealed(self._job_key(), f"task:{task_id}", request.get("secret_env"))
                env = {**(request.get("env") or {}), **secrets, "CORRAL_TASK_ID": task_id, NODE_ENV: self.node_id}
                script = request.get("script")
                # A registered script (issue 17): its checked cached file, run as [interpreter, file, *args].
                command = shlex.join(self._scripts.argv(task_id, script)) if script else rec.command
                popen = process_tree.spawn_piped(command, _work_dir(), env)
            except (OSError, secret_env.SecretEnvError, ScriptUnavailable) as exc:
                logger.warning("node %s task %s: command could not start: %s", self.node_id, task_id, exc)
                self._end(rec, HostRunStatus.FAILED, error_message=f"could not start: {exc}")
                self._publisher.add(self._report(rec))
                self._wake()
                return {"task_id": task_id, "status": rec.status, "pid": None, "started": False}
            rec.status = HostRunStatus.RUNNING.value
            rec.pid = popen.pid
            rec.create_time = process_tree.create_time(popen.pid)
            rec.started_at = time.time()
            # Killed at its timeout, or at the task's deadline when it started late (it waited in the queue).
            timeout = rec.timeout if left is None else min(rec.timeout, left)
            run = RunningCommand(rec, popen, deadline=time.monotonic() + timeout)
            self._running[task_id] = run
            assert popen.stdout is not None and popen.stderr is not None
            self._reader.add(popen.stdout, run.stdout)
            self._reader.add(popen.stderr, run.stderr)
            self._reader.watch_exit(popen.pid)
            self._publisher.add(self._report(rec))
            logger.info(
                "node %s task %s: command running, pid %s, timeout %gs", self.node_id, task_id, rec.pid, rec.timeout
            )
        self._wake()
        # Saved once, with the pid, while the command already runs: a restarted agent finds the pid to kill,
        # a redelivered RUN_COMMAND finds the task id. An agent that dies before the write leaves a command
        # nobody recorded: its successor finds it by its environment (recover, _settle_unrecorded), so it never
        # runs twice.
        self._save(task_id)
        return {"task_id": task_id, "status": rec.status, "pid": rec.pid, "started": True}

    def keep_scripts(self, scripts: list[dict[str, Any]], fetch: bool = True) -> list[str]:
        """Keep ``scripts`` (ScriptRunSchema dicts of the agent-side schedules) in the cache, replacing what was
        kept: fetched now (``fetch``: the set just came through Redis) so their firings run while Redis is
        unreachable, and never pruned. Returns the ones that could not be had (name@version: its error)."""
        missing = []
        with self._lock:
            self._kept_scripts = frozenset(script["digest"] for script in scripts)
            for script in scripts if fetch else []:
                try:
                    self._scripts.prepare("(agent schedules)", script)
                except ScriptUnavailable as exc:
                    # Not fatal: a firing fetches it again while Redis is reachable (and fails, saying so, if not).
                    logger.error("node %s: agent schedule script not cached: %s", self.node_id, exc)
                    missing.append(f"{script['name']}@{script['version']}: {exc}")
        return missing

    def _time_left(self, deadline: float | None) -> float | None:
        """Seconds until ``deadline`` (Redis's clock, as the manager set it), or None without one.

        Redis's clock (heartbeat.RedisClock), not this host's: a skewed agent clock must neither run an expired
        command nor refuse a live one. Without Redis (it is reachable, the job just came from it) this host's clock.
        """
        if deadline is None:
            return None
        redis = self._redis()
        try:
            now = self._clock.now(redis) if redis is not None else time.time()
        except RedisError:
            now = time.time()
        return float(deadline) - now

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Kill the process group of a running command; it is reported canceled once it is gone."""
        with self._lock:
            run = self._running.get(task_id)
            if run is not None and run.final is None:
                if run.ending is None:
                    self._kill(run, HostRunStatus.CANCELED)
                self._wake()
                return {"task_id": task_id, "status": "canceling"}
            known = self._records.get(task_id)
            if known is not None:
                logger.info("node %s task %s: command already %s, cancel ignored", self.node_id, task_id, known.status)
                return {"task_id": task_id, "status": known.status}
            # Never seen here: remember it, so that a RUN_COMMAND arriving late stays a no-op.
            rec = CommandRecord(task_id=task_id)
            self._records[task_id] = rec
            self._end(rec, HostRunStatus.CANCELED, error_message="canceled before it started on this node")
            self._publisher.add(self._report(rec))
        self._wake()
        return {"task_id": task_id, "status": HostRunStatus.CANCELED.value}

    # -- life of the runner ------------------------------------------------------------------------

    def start(self) -> CommandRunner:
        """Start the reader and publisher threads."""
        if not self._started:
            self._started = True
            self._reader.start()
            self._publisher_thread.start()
        return self

    def close(self) -> None:
        """Stop the threads; running commands are left to the next agent, which kills them and reports them."""
        self._publisher_thread.close()
        self._started = False
        self._reader.close()
        with self._lock:
            for run in self._running.values():
                if run.final is None:
                    process_tree.leave_running([run.popen])
                else:
                    self._publisher.hold(run.final)
            self._running.clear()
        self._publisher.hold_all()
        self._save_marked()  # the ends settled since the last save
        self._journal.close()

    # -- the publisher thread ----------------------------------------------------------------------

    def _next_wait(self) -> float:
        """How long the publisher waits before its next round, unless woken: short while anything is under way."""
        with self._lock:
            busy = bool(self._running) or len(self._publisher) > 0 or len(self._publisher.unacknowledged) > 0
        timeout = FLUSH_SECONDS if busy else IDLE_WAKE_SECONDS
        held = self._publisher.hold_left()
        if held:  # a running report becomes due before the next tick
            timeout = min(timeout, held)
        if self._journal.unsynced:
            timeout = min(timeout, JOURNAL_SYNC_SECONDS)
        return timeout

    def watch(self) -> float | None:
        """One round of the reader thread: check exits, deadlines and kills; returns when to look again."""
        with self._lock:
            now = time.monotonic()
            running = [run for run in self._running.values() if run.final is None]
            for run in running:
                self._check(run, now)
            settled = any(run.final is not None for run in running)
            # Output ended but the process not reaped yet: it is exiting, look again almost at once.
            exiting = any(run.final is None and run.stdout.closed and run.stderr.closed for run in running)
        if settled:
            self._wake()
        if exiting:
            return EXIT_RECHECK_SECONDS
        return FLUSH_SECONDS if running else None

    def poll(self) -> None:
        """One round of the publisher: append new output lines, publish the reports in order."""
        with self._lock:
            streams = [(tid, capture) for tid, run in self._running.items() for capture in (run.stdout, run.stderr)]
            # Settled: both pipes closed, so every line of its output is pending now and goes before its final.
            ended = {task_id: run.final for task_id, run in self._running.items() if run.final is not None}
        if self._publisher.ready() and self._publisher.flush(streams, list(ended.values())):
            with self._lock:
                for task_id in ended:
                    del self._running[task_id]
        if self._publisher.ready():
            self._publisher.check_acknowledgments()
        self._save_marked()
        self._journal.sync()
        if time.time() - self._last_prune > 600:
            self._prune()
        elif self._journal.needs_compacting():
            with self._lock:
                self._journal.compact(self._records)

    def _check(self, run: RunningCommand, now: float) -> None:
        rec = run.record
        if run.ending is None and now >= run.deadline:
            logger.warning("node %s task %s: command timed out after %gs", self.node_id, rec.task_id, rec.timeout)
            self._kill(run, HostRunStatus.TIMED_OUT)
        elif run.stop is not None and now >= run.stop.kill_at and not run.sigkilled:
            run.sigkilled = True  # once: what is left of the tree after that holds the pipes at most
            leftovers = run.stop.escalate(now)
            if leftovers:
                logger.warning("node %s task %s: SIGKILL to %d processes", self.node_id, rec.task_id, len(leftovers))
        code = run.popen.poll()
        streams_done = run.stdout.closed and run.stderr.closed
        if code is None or not streams_done:
            if code is not None and run.stop is not None and now >= run.stop.kill_at + PIPE_GIVE_UP_SECONDS:
                # Killed, yet its pipes stay open: a process outside the group holds them. Stop waiting.
                self._reader.give_up(run.stdout)
                self._reader.give_up(run.stderr)
            return
        # Not saved here: the publisher saves after publishing, off the path of the report. Should the agent
        # die in between, the record still says running and the next agent reports it failed, which the
        # manager ignores for a host that already ended.
        if run.ending == HostRunStatus.CANCELED:
            self._end(rec, HostRunStatus.CANCELED, save=False, exit_code=code, error_message="canceled")
        elif run.ending == HostRunStatus.TIMED_OUT:
            reason = f"timed out after {rec.timeout:g} s"
            self._end(rec, HostRunStatus.TIMED_OUT, save=False, exit_code=code, error_message=reason)
        elif code == 0:
            self._end(rec, HostRunStatus.SUCCEEDED, save=False, exit_code=0)
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            self._end(rec, HostRunStatus.FAILED, save=False, exit_code=code, error_message=f"killed by {name}")
        else:
            self._end(rec, HostRunStatus.FAILED, save=False, exit_code=code)
        run.final = self._report(rec, run)

    def _kill(self, run: RunningCommand, ending: HostRunStatus) -> None:
        """SIGTERM the command's whole tree now, SIGKILL whatever is left KILL_GRACE_SECONDS later."""
        run.ending = ending
        run.stop = process_tree.GraceStop.prepare(run.popen.pid, KILL_GRACE_SECONDS, time.monotonic())
        logger.info(
            "node %s task %s: %s, SIGTERM to %d processes",
            self.node_id,
            run.record.task_id,
            "canceling" if ending == HostRunStatus.CANCELED else "timing out",
            len(run.stop.targets),
        )
        run.stop.terminate()

    # -- records and reports -----------------------------------------------------------------------

    def _published(self, task_id: str) -> None:
        """A final report went out: remember it (saved at the end of the publisher's round)."""
        self._mark(task_id, "reported")

    def _acknowledged(self, task_id: str) -> None:
        """The manager has a final report: it need not go again (saved at the end of the publisher's round)."""
        self._mark(task_id, "acked")

    def _mark(self, task_id: str, flag: str) -> None:
        with self._lock:
            rec = self._records.get(task_id)
            if rec is not None:
                setattr(rec, flag, True)
                self._marked.add(task_id)

    def _end(self, rec: CommandRecord, status: HostRunStatus, save: bool = True, **changes: Any) -> None:
        """The one way a command reaches a final status: update, log, save."""
        for name, value in changes.items():
            setattr(rec, name, value)
        rec.status = status.value
        rec.finished_at = time.time()
        log = logger.info if status == HostRunStatus.SUCCEEDED else logger.warning
        log(
            "node %s task %s: command %s (pid %s, exit code %s%s)",
            self.node_id,
            rec.task_id,
            rec.status,
            rec.pid,
            rec.exit_code,
            f", {rec.error_message}" if rec.error_message else "",
        )
        if save:
            self._save(rec.task_id)

    def _report(self, rec: CommandRecord, run: RunningCommand | None = None) -> dict[str, Any]:
        report = rec.report(self.node_id)
        if run is not None:
            for capture in (run.stdout, run.stderr):
                report[capture.name] = capture.text()
                report[f"{capture.name}_truncated"] = capture.truncated
        return report

    def _prune(self) -> None:
        now = time.time()
        self._last_prune = now
        with self._lock:
            cutoff = now - KEEP_ENDED_SECONDS
            if prune_records(
                self._records,
                lambda rec: not rec.live and rec.acked and (rec.finished_at or now) < cutoff,
                "command",
                self.node_id,
            ):
                self._journal.compact(self._records)
            # Under the lock: a run never finds its script removed under it.
            self._scripts.prune(keep=self._kept_scripts)

    def _save(self, *task_ids: str) -> None:
        """Append the records of ``task_ids`` to the journal as they are now (under the lock: a later state of a
        record is never written before an earlier one)."""
        with self._lock:
            self._marked.difference_update(task_ids)
            recs = [self._records[tid] for tid in task_ids if tid in self._records]
            self._journal.append(recs, len(self._records))

    def _save_marked(self) -> None:
        with self._lock:
            self._save(*self._marked)

    def save_all(self) -> None:
        """Rewrite the journal with every record (after recovery changed many)."""
        with self._lock:
            self._marked.clear()
            self._journal.compact(self._records)


def _work_dir() -> Path:
    """Where commands start: the agent user's home (as with ssh or salt cmd.run), else /."""
    home = Path.home()
    return home if home.is_dir() else Path("/")
