"""One app instance under supervision: its start (working dir, uris, ports, cgroups, spawn), the watch of its
process and health checks, its restarts with backoff (deployment_tasks.restarts), its stop, and its reports.

Everything here runs in the instance's own thread (AppInstances starts it); other threads only set ``rec.stop``
and wake it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from shared import secret_env
from shared.states import AppHealth, AppInstanceState

from .. import process_tree
from ..components.image_fetch import FetchCancelled, FetchError
from ..deployment_tasks.restarts import RestartPolicy, RunState, RunStates
from . import cgroups, uris, wakeup
from .health import HealthChecks, run_check
from .logs import InstanceLogs
from .ports import NoFreePort, binds
from .records import InstanceRecord, default_working_dir, run_dir

if TYPE_CHECKING:
    from .manager import AppInstances

logger = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.1
"""How often a process being stopped is looked at (its grace, then SIGKILL, are timed in these steps)."""

TIMER_SLACK_SECONDS = 0.1
"""How much later than its poll an instance's thread may wake so that one wake-up serves a check as well."""

LAUNCH_SCRIPT = (
    'f="$1"; c="$2"; shift 2; '
    'for p in "$@"; do echo $$ > "$p" || echo "corral: could not join cgroup $p" >&2; done; '
    '/bin/sh -c "$c"; rc=$?; echo "$rc" > "$f.tmp" && mv -f "$f.tmp" "$f"; exit "$rc"'
)
"""Joins the instance's cgroups (``$3...``: their cgroup.procs files), runs the command line (``$2``) and leaves
its exit status in the file ``$1``, agent or not. The command line travels as an argument, never interpolated."""

WIRE_STATES = {
    RunState.STOPPED: AppInstanceState.STOPPED,
    RunState.STARTING: AppInstanceState.STARTING,
    RunState.RUNNING: AppInstanceState.RUNNING,
    RunState.BACKOFF: AppInstanceState.BACKOFF,
    RunState.STOPPING: AppInstanceState.STOPPING,
    RunState.EXITED: AppInstanceState.BACKOFF,  # never: an instance is always started again
    RunState.FATAL: AppInstanceState.BACKOFF,
}
"""The state an instance report shows for each run state of its process."""


def shell_word(arg: str) -> str:
    """``arg`` in double quotes for /bin/sh: ``\\``, ``"`` and backquotes escaped, ``$`` left alone, so ``$PORT0``
    (and any ``$VAR`` of the instance's environment) still expands in args. Not shlex.quote: its single quotes
    would keep ``$PORT0`` from expanding."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`") + '"'


def command_line(spec: dict[str, Any]) -> str:
    """What the instance runs through ``/bin/sh -c``: ``command`` as written, then each arg as a shell_word."""
    return " ".join([spec["command"], *(shell_word(a) for a in spec.get("args") or [])])


def decode_end(code: int | None) -> tuple[int | None, int | None]:
    """(exit code, signal) of a launch script's status: negative for the script itself killed by a signal,
    128+n for the command killed by signal n (as the shell reports it)."""
    if code is None:
        return None, None
    if code < 0:
        return None, -code
    if 128 < code <= 128 + 64:
        return None, code - 128
    return code, None


def _signal(number: int) -> signal.Signals:
    try:
        return signal.Signals(number)
    except ValueError:
        return number  # type: ignore[return-value]  # a real-time signal: os.killpg takes its number


class Instance:
    """The supervision of one instance by its record; ``step`` advances it, ``report`` says where it is."""

    def __init__(self, rec: InstanceRecord, owner: AppInstances) -> None:
        self.rec = rec
        self.owner = owner
        spec = rec.spec
        policy = RestartPolicy(
            retries=sys.maxsize,
            backoff_seconds=float(spec["backoff_seconds"]),
            backoff_factor=float(spec["backoff_factor"]),
            max_backoff_seconds=float(spec["max_backoff_seconds"]),
            restart_on_success=True,  # a service: any end is a failure to recover from
            stable_seconds=owner.stable_seconds,
        )
        self.states = RunStates(f"node {owner.node_id} {rec.describe()}", policy, self._on_change)
        self.states.state = RunState(rec.run_state)
        self.states.restarts = rec.backoff_restarts
        self.states.retry_at = rec.retry_at
        self.states.running_since = rec.running_since
        self.run_dir = run_dir(owner.data_dir, rec.instance_id)
        self.logs = InstanceLogs(self.run_dir, owner.node_id, rec.instance_id, rec.log_offsets)
        self.popen: subprocess.Popen[bytes] | None = None
        self.adopted: psutil.Process | None = None
        self.grace: process_tree.GraceStop | None = None
        self.checks: HealthChecks | None = None
        self.limits: cgroups.Limits | None = None
        self.end_code: int | None = None
        self.just_restarted: dict[str, Any] | None = None  # sent with the next report
        self.next_report = 0.0
        self.finished = False
        self._exit_fd: tuple[int, int] | None = None  # (pid, pidfd) of the process being watched

    # -- identity and environment ------------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self.rec.instance_id

    def working_dir(self) -> Path:
        given = self.rec.spec.get("working_dir")
        return Path(given) if given else default_working_dir(self.owner.data_dir, self.instance_id)

    def environment(self, secrets: dict[str, str] | None = None) -> dict[str, str]:
        """The spec's env and ``secrets``, then what the agent sets: PORT0..n, PORT, PORTS, HOST, APP_NAME,
        INSTANCE_ID."""
        spec = self.rec.spec
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        env.update(secrets or {})
        for index, port in enumerate(self.rec.ports):
            env[f"PORT{index}"] = str(port)
        if self.rec.ports:
            env["PORT"] = str(self.rec.ports[0])
            env["PORTS"] = ",".join(str(p) for p in self.rec.ports)
        env["HOST"] = self.owner.host
        env["APP_NAME"] = spec["app"]
        env["INSTANCE_ID"] = self.instance_id
        return env

    # -- adoption ----------------------------------------------------------------------------------------------

    def adopt(self) -> None:
        """After an agent restart: find the recorded process again (same pid, same start time)."""
        rec = self.rec
        if rec.pid is not None and self.states.state in (RunState.STARTING, RunState.RUNNING, RunState.STOPPING):
            self.adopted = process_tree.find_process(rec.pid, rec.create_time)
            if self.states.state is RunState.STARTING:
                # The agent stopped between spawn and record: what ran is running now, or ended.
                self.states.state = RunState.RUNNING
            self.limits = cgroups.setup(self.instance_id, rec.spec.get("res_alloc"), self.owner.cgroup_root)
            if rec.kill_at is not None:
                self.grace = process_tree.GraceStop(
                    rec.pid, rec.kill_at, process_tree.group_leftovers(rec.pid, rec.create_time)
                )
            if self.states.state is RunState.RUNNING and rec.started_at is not None:
                self.checks = HealthChecks.resumed(
                    rec.spec.get("health_checks") or [], rec.check_failures, time.time(), rec.started_at
                )
            logger.info(
                "node %s %s: %s pid %s",
                self.owner.node_id,
                rec.describe(),
                "adopted" if self.adopted is not None else "process gone while the agent was away,",
                rec.pid,
            )
        elif self.states.state in (RunState.STARTING, RunState.RUNNING):
            self.states.state = RunState.STOPPED  # never spawned: start it again

    # -- the step ----------------------------------------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Advance the instance; True once it is over (stopped or failed) and may be forgotten."""
        if self.finished:
            return True
        state = self.states.state
        if self.rec.stop is not None:
            return self._stop_step(now)
        if state is RunState.STOPPED or self.states.due(now):
            self._start(now)
        elif state is RunState.RUNNING:
            self._watch(now)
        return self.finished

    def wait_seconds(self, now: float, poll: float) -> float:
        """How long its thread may sleep before the next step: ``poll``, shorter when a restart or a check falls
        due sooner, or a stop is under way (its grace is counted in tenths).

        Every wake-up of 100 threads costs: the periodic report goes out on the first wake after it is due (at
        most ``poll`` late) rather than on one of its own, and a look at the logs due just before a check waits
        for it (up to TIMER_SLACK_SECONDS), so a checked instance wakes once per check, not twice."""
        wait = min(poll, self.owner.report_interval)
        retry_at = self.states.retry_at
        if self.states.state is RunState.BACKOFF and retry_at is not None:
            wait = min(wait, retry_at - now)
        if self.checks is not None and self.states.state is RunState.RUNNING:
            due = self.checks.next_at()
            if due is not None:
                wait = due - now if due - now <= wait + TIMER_SLACK_SECONDS else wait
        if self.rec.stop is not None or self.rec.killing is not None:
            wait = min(wait, STOP_POLL_SECONDS)
        return max(0.0, wait)

    def exit_fd(self) -> int | None:
        """A pidfd of the running process, readable once it exits (None when nothing runs or none can be had)."""
        if self.popen is not None:
            pid: int | None = self.popen.pid
        elif self.adopted is not None:
            pid = self.adopted.pid
        else:
            pid = None
        if self._exit_fd is not None and self._exit_fd[0] != pid:
            self.close_exit_fd()
        if pid is None:
            return None
        if self._exit_fd is None:
            fd = wakeup.pidfd(pid)
            if fd is None:
                return None
            self._exit_fd = (pid, fd)
        return self._exit_fd[1]

    def close_exit_fd(self) -> None:
        if self._exit_fd is not None:
            try:
                os.close(self._exit_fd[1])
            except OSError:
                pass
            self._exit_fd = None

    def _stop_step(self, now: float) -> bool:
        stop = self.rec.stop or {}
        if self.states.state is RunState.RUNNING and self.rec.pid is not None:
            if self.grace is None:
                self._send(int(stop["kill_signal"]), float(stop["grace_seconds"]), now)
            else:
                # A kill for a failed check was under way: the stop's grace wins if shorter.
                self.grace.kill_at = min(self.grace.kill_at, now + float(stop["grace_seconds"]))
            self.rec.kill_at = self.grace.kill_at if self.grace else None
            self.states.stopping()
        elif self.states.state in (RunState.BACKOFF, RunState.STARTING, RunState.RUNNING):
            self.states.stopping()
            self.states.stopped()
        if self.states.state is RunState.STOPPING:
            if not self._gone(now):
                return False
            self.states.stopped()
        self._finish()
        return True

    def _send(self, sig: int, grace_seconds: float, now: float) -> None:
        """Signal the process group and its tree with ``sig``; SIGKILL follows at ``kill_at`` (_gone)."""
        assert self.rec.pid is not None
        pid = self.rec.pid
        self.grace = process_tree.GraceStop.prepare(
            pid, grace_seconds, now, process_tree.group_leftovers(pid, self.rec.create_time)
        )
        process_tree.signal_tree(self.grace.targets, pid, _signal(sig))
        self.rec.kill_at = self.grace.kill_at
        self.owner.save()

    def _gone(self, now: float) -> bool:
        """Whether nothing is left of the process tree being stopped (SIGKILL to what is, once the grace is over)."""
        ended, code = self._exit_status()
        if ended:
            self.end_code = code
        grace = self.grace
        if grace is None:
            return ended
        if ended and not grace.remaining():
            return True
        if grace.given_up(now):
            logger.warning("node %s %s: processes survived SIGKILL", self.owner.node_id, self.rec.describe())
            return True
        if grace.escalate(now):
            logger.warning("node %s %s: grace over, SIGKILL", self.owner.node_id, self.rec.describe())
        return False

    def _exit_status(self) -> tuple[bool, int | None]:
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return False, None
            self.popen = None
            return True, code
        if self.adopted is not None and process_tree.is_alive(self.adopted):
            return False, None
        self.adopted = None
        if self.rec.pid is None:
            return True, None
        return True, process_tree.read_exit_code(self.run_dir)

    # -- start -------------------------------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        rec = self.rec
        spec = rec.spec
        self.states.starting()
        workdir = self.working_dir()
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(f"working_dir {str(workdir)!r}: {exc}")
            return
        if not workdir.is_dir():
            self._fail(f"working_dir {str(workdir)!r} is not a directory on this node")
            return
        wanted = list(spec.get("ports") or [])
        # A restart keeps its ports, unless something else took one of those the agent picked meanwhile.
        taken = [got for want, got in zip(wanted, rec.ports, strict=False) if want == 0 and not binds(got)]
        if wanted and (not rec.ports or taken):
            if taken:
                logger.warning("node %s %s: ports %s taken meanwhile", self.owner.node_id, rec.describe(), taken)
                self.owner.ports.release(self.instance_id)
                rec.ports = []
            try:
                rec.ports = self.owner.ports.assign(self.instance_id, wanted)
            except NoFreePort as exc:
                self._start_failed(str(exc), time.time())
                return
            self.owner.save()
        try:
            downloaded = uris.fetch_all(
                list(spec.get("uris") or []), workdir, self.owner.sftp, cancelled=self._cancelled
            )
        except FetchCancelled:
            return  # the stop (or the agent's close) takes it from here
        except FetchError as exc:
            self._start_failed(str(exc), time.time())
            return
        if downloaded:
            logger.info("node %s %s: downloaded %s", self.owner.node_id, rec.describe(), ", ".join(downloaded))
        self.limits = cgroups.setup(self.instance_id, spec.get("res_alloc"), self.owner.cgroup_root)
        rec.limits = self.limits.description if self.limits else None
        rec.oom_base = cgroups.oom_kills(self.limits)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        exit_file = self.run_dir / process_tree.EXIT_CODE_FILE
        exit_file.unlink(missing_ok=True)
        procs = [str(p) for p in (self.limits.procs_files if self.limits and self.limits.enforced else [])]
        argv = ["/bin/sh", "-c", LAUNCH_SCRIPT, "corral-app", str(exit_file), command_line(spec), *procs]
        try:
            # Opened at each start, straight into the child's environment: apps.json keeps the sealed form only.
            # After an agent restart the key is there (instances are adopted after the join); a start without
            # it (no manager) fails into the backoff and is tried again.
            context = secret_env.instance_context(spec["app"], self.instance_id)
            secrets = secret_env.open_sealed(self.owner.key(), context, spec.get("secret_env"))
            with open(self.logs.path("stdout"), "ab") as out, open(self.logs.path("stderr"), "ab") as err:
                self.popen = process_tree.popen_in_session(argv, workdir, self.environment(secrets), out, err)
        except (OSError, secret_env.SecretEnvError) as exc:
            self._start_failed(f"could not start: {exc}", time.time())
            return
        started = time.time()
        rec.pid = self.popen.pid
        rec.create_time = process_tree.create_time(self.popen.pid)
        rec.started_at = started
        # exit_code, signal and reason stay: they tell how the last process ended (InstanceReportSchema).
        checks = list(spec.get("health_checks") or [])
        self.checks = HealthChecks.fresh(checks, started)
        rec.check_failures = self.checks.failures()
        rec.health = AppHealth.UNKNOWN if checks else AppHealth.HEALTHY
        rec.healthy_since = None if checks else started
        logger.info(
            "node %s %s: started pid %s, ports %s (%s)",
            self.owner.node_id,
            rec.describe(),
            rec.pid,
            rec.ports,
            rec.limits or "no limits asked",
        )
        self.states.running(started)

    def _cancelled(self) -> bool:
        return self.rec.stop is not None or self.owner.closing()

    def _start_failed(self, reason: str, now: float) -> None:
        why = f"start failed: {reason}"
        restart = {"at": now, "reason": why, "exit_code": None, "signal": None, "oom": False}
        self.rec.reason = why
        self.rec.add_restart(restart)
        self.just_restarted = restart
        self.states.spawn_failed(why, now)

    def _fail(self, reason: str) -> None:
        """The spec cannot run here at all: the instance ends failed."""
        self.rec.failed = reason
        self.rec.reason = reason
        logger.error("node %s %s: failed: %s", self.owner.node_id, self.rec.describe(), reason)
        self._finish()

    # -- watch -------------------------------------------------------------------------------------------------

    def _watch(self, now: float) -> None:
        rec = self.rec
        if rec.killing is not None:
            if self._gone(now):
                self._ended(self.end_code, now)
            return
        ended, code = self._exit_status()
        if ended:
            if rec.pid is not None:
                # What the command left behind in its group goes too: its ports must be free for the restart.
                process_tree.kill(process_tree.group_leftovers(rec.pid, rec.create_time), rec.pid)
            self._ended(code, now)
            return
        self._run_checks()

    def _run_checks(self) -> None:
        rec = self.rec
        checks = self.checks
        if checks is None:
            return
        for index in checks.due(time.time()):
            check = checks.checks[index]
            result = run_check(check, rec.ports, self.working_dir(), self.environment())
            at = time.time()
            failures = checks.record(index, result, at)
            rec.last_check = {"at": at, "ok": result.ok, "answer": result.answer, "consecutive_failures": failures}
            counted = checks.failures()
            if counted != rec.check_failures:
                self.owner.save_soon()  # an adopting agent goes on counting from there (a change of health saves too)
            rec.check_failures = counted
            health = checks.health(rec.health)
            changed = health != rec.health
            rec.health = health
            if health == AppHealth.HEALTHY and rec.healthy_since is None:
                rec.healthy_since = at
            elif health != AppHealth.HEALTHY and rec.healthy_since is not None:
                if at - rec.healthy_since >= self.owner.stable_seconds:
                    self.states.restarts = 0  # it ran healthy for a while: the backoff starts over
                rec.healthy_since = None
            if checks.exhausted(index):
                rec.killing = f"health check failed {failures} times in a row: {result.answer}"
                logger.warning("node %s %s: %s; restarting", self.owner.node_id, rec.describe(), rec.killing)
                self._send(int(rec.spec["kill_signal"]), float(rec.spec["stop_grace_seconds"]), at)
                self.changed()
                return
            if changed:
                self.changed()

    def _ended(self, code: int | None, now: float) -> None:
        """The process is gone (by itself, or killed for a failed check): record why, back off, start again."""
        rec = self.rec
        exit_code, sig = decode_end(code)
        oom = cgroups.oom_kills(self.limits) > rec.oom_base
        if rec.killing is not None:
            reason = rec.killing
        elif oom:
            reason = f"out of memory (cgroup limit {(rec.spec.get('res_alloc') or {}).get('mem_mb')} MB)"
        elif sig is not None:
            reason = f"killed by signal {sig}"
        elif exit_code is None:
            reason = "ended without an exit status"
        else:
            reason = f"exited with code {exit_code}"
        if rec.killing is not None:
            self.states.running_since = None  # running is not running well: only healthy time resets the backoff
        restart = {"at": now, "reason": reason, "exit_code": exit_code, "signal": sig, "oom": oom}
        rec.add_restart(restart)
        rec.reason = reason
        rec.exit_code = exit_code
        rec.signal = sig
        rec.pid = None
        rec.create_time = None
        rec.killing = None
        rec.kill_at = None
        rec.health = AppHealth.UNKNOWN
        rec.healthy_since = None
        self.grace = None
        self.checks = None
        self.just_restarted = restart
        self.states.exited(code, now)

    # -- the end -----------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        """Over: its ports free, its groups removed, the last report sent, its record dropped."""
        self.finished = True
        self.logs.pump(self.owner.redis(), self.owner.key(), self.owner.log_file_bytes, self.owner.log_files_kept)
        cgroups.remove(self.limits)
        # Its files go with it (the manager serves its logs from the Redis stream): a node that runs rolling
        # updates for months must not keep every old instance's directories. A working_dir the spec named stays.
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if not self.rec.spec.get("working_dir"):
            shutil.rmtree(self.working_dir(), ignore_errors=True)
        self.owner.finished(self)

    # -- reports -----------------------------------------------------------------------------------------------

    def _on_change(self, old: RunState, new: RunState, reason: str) -> None:
        if new is RunState.STOPPED:
            return  # the end: _finish sends the last report
        self.changed()

    def changed(self) -> None:
        """Save the record and report at once: every change of state or health is reported."""
        self._sync()
        self.owner.save()
        self.owner.send(self.report())

    def _sync(self) -> None:
        rec = self.rec
        rec.run_state = str(self.states.state)
        rec.backoff_restarts = self.states.restarts
        rec.retry_at = self.states.retry_at
        rec.running_since = self.states.running_since
        rec.log_offsets = self.logs.offsets()

    def wire_state(self) -> str:
        if self.rec.failed is not None:
            return AppInstanceState.FAILED
        return str(WIRE_STATES[self.states.state])

    def report(self) -> dict[str, Any]:
        """The instance's InstanceReportSchema report now (with the restart that just happened, once)."""
        rec = self.rec
        running = self.states.state is RunState.RUNNING
        restart, self.just_restarted = self.just_restarted, None
        return {
            "app": rec.spec["app"],
            "instance_id": self.instance_id,
            "node_id": self.owner.node_id,
            "version": rec.spec["version"],
            "state": self.wire_state(),
            "health": rec.health if running else AppHealth.UNKNOWN,
            "at": time.time(),
            "pid": rec.pid if running or self.states.state is RunState.STOPPING else None,
            "ports": list(rec.ports),
            "started_at": rec.started_at,
            "restarts": rec.restarts,
            "restart": restart,
            "next_start_at": rec.retry_at if self.states.state is RunState.BACKOFF else None,
            "exit_code": rec.exit_code,
            "signal": rec.signal,
            "reason": rec.reason,
            "last_check": rec.last_check,
            "limits": rec.limits,
        }

    def tick(self, now: float) -> None:
        """Between steps: ship new log lines, and the periodic report when due."""
        self.logs.pump(self.owner.redis(), self.owner.key(), self.owner.log_file_bytes, self.owner.log_files_kept)
        if now >= self.next_report:
            self.next_report = now + self.owner.report_interval
            logged = self.logs.offsets() != self.rec.log_offsets
            self._sync()
            if logged:
                # The record changed only by its log offsets: saved with the others on the next flush, not one
                # whole state file per instance per interval (what cost a fifth of a core at 100 instances),
                # and not at all for a quiet instance (a save a second was most of an idle agent's CPU).
                self.owner.save_soon()
            self.owner.send(self.report(), soon=False)  # a restart was sent at once already (changed)

    def let_go(self) -> None:
        """The agent closes: leave the process running for the next agent to adopt."""
        self._sync()
        if self.popen is not None:
            process_tree.leave_running([self.popen])
            self.popen = None
