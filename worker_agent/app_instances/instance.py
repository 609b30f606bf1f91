"""One app instance under supervision: its start (working dir, uris, ports, cgroups, spawn), the watch of its
process and health checks, its restarts with backoff (deployment_tasks.restarts), its stop, and its reports.
Here is what happens when; the how is beside it: launch.py (what a start runs), process.py (what is known of
its process, and how it is made to end), backoff.py (what a restart leaves in the record), reports.py.

Everything here runs in the instance's own thread (AppInstances starts it); other threads only set ``rec.stop``
and wake it.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import secret_env
from shared.states import AppHealth

from .. import process_tree
from ..components.image_fetch import FetchCancelled, FetchError
from ..deployment_tasks.restarts import RunState
from . import backoff, cgroups, launch, reports, uris
from .health import HealthChecks, run_check
from .launch import command_line, shell_word
from .logs import InstanceLogs
from .ports import NoFreePort, binds
from .process import InstanceProcess
from .records import InstanceRecord, default_working_dir, run_dir

if TYPE_CHECKING:
    from .manager import AppInstances

__all__ = ["TIMER_SLACK_SECONDS", "Instance", "command_line", "shell_word"]  # launch's two: re-exported

logger = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.1
"""How often a process being stopped is looked at (its grace, then SIGKILL, are timed in these steps)."""

TIMER_SLACK_SECONDS = 0.1
"""How much later than its poll an instance's thread may wake so that one wake-up serves a check as well."""


class Instance:
    """The supervision of one instance by its record; ``step`` advances it, ``report`` says where it is."""

    def __init__(self, rec: InstanceRecord, owner: AppInstances) -> None:
        self.rec = rec
        self.owner = owner
        self.states = backoff.run_states(rec, owner.node_id, owner.stable_seconds, self._on_change)
        self.run_dir = run_dir(owner.data_dir, rec.instance_id)
        self.logs = InstanceLogs(self.run_dir, owner.node_id, rec.instance_id, rec.log_offsets)
        self.proc = InstanceProcess(self.run_dir)
        self.checks: HealthChecks | None = None
        self.limits: cgroups.Limits | None = None
        self.just_restarted: dict[str, Any] | None = None  # sent with the next report
        self.next_report = 0.0
        self.finished = False

    # -- identity and environment ------------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self.rec.instance_id

    def working_dir(self) -> Path:
        given = self.rec.spec.get("working_dir")
        return Path(given) if given else default_working_dir(self.owner.data_dir, self.instance_id)

    def environment(self, secrets: dict[str, str] | None = None) -> dict[str, str]:
        """What its process (and its command checks) get: launch.environment."""
        return launch.environment(self.rec.spec, self.rec.ports, self.owner.host, self.instance_id, secrets)

    # -- adoption ----------------------------------------------------------------------------------------------

    def adopt(self) -> None:
        """After an agent restart: find the recorded process again (same pid, same start time)."""
        rec = self.rec
        if rec.pid is not None and self.states.state in (RunState.STARTING, RunState.RUNNING, RunState.STOPPING):
            self.proc.adopted = process_tree.find_process(rec.pid, rec.create_time)
            if self.states.state is RunState.STARTING:
                # The agent stopped between spawn and record: what ran is running now, or ended.
                self.states.state = RunState.RUNNING
            self.limits = cgroups.setup(self.instance_id, rec.spec.get("res_alloc"), self.owner.cgroup_root)
            if rec.kill_at is not None:
                self.proc.grace = process_tree.GraceStop(
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
                "adopted" if self.proc.adopted is not None else "process gone while the agent was away,",
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
        return self.proc.exit_fd()

    def close_exit_fd(self) -> None:
        self.proc.close_exit_fd()

    def _stop_step(self, now: float) -> bool:
        stop = self.rec.stop or {}
        if self.states.state is RunState.RUNNING and self.rec.pid is not None:
            if self.proc.grace is None:
                self._send(int(stop["kill_signal"]), float(stop["grace_seconds"]), now)
            else:
                # A kill for a failed check was under way: the stop's grace wins if shorter.
                self.proc.grace.kill_at = min(self.proc.grace.kill_at, now + float(stop["grace_seconds"]))
            self.rec.kill_at = self.proc.grace.kill_at if self.proc.grace else None
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
        self.rec.kill_at = self.proc.send(self.rec.pid, self.rec.create_time, sig, grace_seconds, now)
        self.owner.save()

    def _gone(self, now: float) -> bool:
        """Whether nothing is left of the process tree being stopped (SIGKILL to what is, once the grace is over)."""
        return self.proc.gone(now, self.rec.pid, f"node {self.owner.node_id} {self.rec.describe()}")

    # -- start -------------------------------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        rec = self.rec
        spec = rec.spec
        self.states.starting()
        workdir = self.working_dir()
        if not self._workdir_ready(workdir) or not self._ports_ready() or not self._fetched(workdir):
            return
        self.limits = cgroups.setup(self.instance_id, spec.get("res_alloc"), self.owner.cgroup_root)
        rec.limits = self.limits.description if self.limits else None
        rec.oom_base = cgroups.oom_kills(self.limits)
        argv = launch.launch_argv(spec, self.run_dir, self.limits)
        try:
            # Opened at each start, straight into the child's environment: apps.json keeps the sealed form only.
            # After an agent restart the key is there (instances are adopted after the join); a start without
            # it (no manager) fails into the backoff and is tried again.
            context = secret_env.instance_context(spec["app"], self.instance_id)
            secrets = secret_env.open_sealed(self.owner.key(), context, spec.get("secret_env"))
            self.proc.popen = launch.spawn(argv, workdir, self.environment(secrets), self.logs)
        except (OSError, secret_env.SecretEnvError) as exc:
            self._start_failed(f"could not start: {exc}", time.time())
            return
        started = time.time()
        rec.pid = self.proc.popen.pid
        rec.create_time = process_tree.create_time(self.proc.popen.pid)
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

    def _workdir_ready(self, workdir: Path) -> bool:
        """Its working dir made; False (the instance failed: no restart helps) when it cannot be."""
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(f"working_dir {str(workdir)!r}: {exc}")
            return False
        if not workdir.is_dir():
            self._fail(f"working_dir {str(workdir)!r} is not a directory on this node")
            return False
        return True

    def _ports_ready(self) -> bool:
        """Its ports assigned; False (a failed start, backing off) when none are free."""
        rec = self.rec
        wanted = list(rec.spec.get("ports") or [])
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
                return False
            self.owner.save()
        return True

    def _fetched(self, workdir: Path) -> bool:
        """Its uris downloaded into ``workdir``; False when a download failed (backing off) or was cancelled."""
        try:
            downloaded = uris.fetch_all(
                list(self.rec.spec.get("uris") or []), workdir, self.owner.sftp, cancelled=self._cancelled
            )
        except FetchCancelled:
            return False  # the stop (or the agent's close) takes it from here
        except FetchError as exc:
            self._start_failed(str(exc), time.time())
            return False
        if downloaded:
            logger.info("node %s %s: downloaded %s", self.owner.node_id, self.rec.describe(), ", ".join(downloaded))
        return True

    def _cancelled(self) -> bool:
        return self.rec.stop is not None or self.owner.closing()

    def _start_failed(self, reason: str, now: float) -> None:
        why, self.just_restarted = backoff.start_failed(self.rec, reason, now)
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
                self._ended(self.proc.end_code, now)
            return
        ended, code = self.proc.exit_status(rec.pid)
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
        if self.rec.killing is not None:
            self.states.running_since = None  # running is not running well: only healthy time resets the backoff
        oom = cgroups.oom_kills(self.limits) > self.rec.oom_base
        self.just_restarted = backoff.ended(self.rec, code, oom, now)
        self.proc.grace = None
        self.checks = None
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
        backoff.keep_states(self.rec, self.states)
        self.rec.log_offsets = self.logs.offsets()

    def wire_state(self) -> str:
        return reports.wire_state(self.rec, self.states.state)

    def report(self) -> dict[str, Any]:
        """The instance's InstanceReportSchema report now (with the restart that just happened, once)."""
        restart, self.just_restarted = self.just_restarted, None
        return reports.instance_report(self.rec, self.states.state, self.owner.node_id, restart)

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
        if self.proc.popen is not None:
            process_tree.leave_running([self.proc.popen])
            self.proc.popen = None
