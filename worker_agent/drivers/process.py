"""The process driver: a component as a supervised process tree in a session of its own that outlives the agent.

The command runs under a small /bin/sh wrapper that leaves its exit status in a file, so the status is
known even when the agent was down while it ended; the agent finds the process again by pid + start time.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from shared.states import ComponentState

from .. import process_tree
from ..components.records import ComponentRecord, files_dir, run_dir
from .base import Check, ConfigFiles, Exit, Found, StartError, Step

logger = logging.getLogger(__name__)

WRAPPER_SCRIPT = 'f="$1"; shift; "$@"; rc=$?; echo "$rc" > "$f.tmp" && mv -f "$f.tmp" "$f"; exit "$rc"'
"""Runs ``$2...`` and leaves its exit status in the file ``$1``, agent or not."""

STOP_POLL_SECONDS = 0.05
"""How often a stop looks whether the tree is gone."""


class ProcessDriver:
    """Starts, watches, measures and stops the process components of one node."""

    engine = "process table"
    check_interval = 0.0  # a look at a child is cheap: every round

    def __init__(self, components_dir: Path) -> None:
        self.components_dir = components_dir
        self._lock = threading.Lock()  # the monitor, the stop work and close share the handles
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, psutil.Process] = {}
        self._measured: dict[int, psutil.Process] = {}  # kept between calls: cpu_percent needs the last sample

    def run_dir(self, rec: ComponentRecord) -> Path:
        """Logs and exit status of one generation."""
        return run_dir(self.components_dir, rec)

    def handle(self, rec: ComponentRecord) -> str:
        """The pid, for log lines."""
        return f"pid {rec.pid}"

    def start(self, rec: ComponentRecord, env: dict[str, str], files: ConfigFiles, step: Step, check: Check) -> None:
        """Spawn the component; sets rec.pid and rec.create_time."""
        step(ComponentState.STARTING)
        run = self.run_dir(rec)
        run.mkdir(parents=True, exist_ok=True)
        exit_file = run / process_tree.EXIT_CODE_FILE
        exit_file.unlink(missing_ok=True)
        spec = rec.spec
        command: str = spec["command"]
        args: list[str] = list(spec.get("args") or [])
        target = [command, *args] if args else ["/bin/sh", "-c", command]
        cwd = Path(spec["working_dir"]) if spec.get("working_dir") else files_dir(self.components_dir, rec)
        if not cwd.is_dir():
            raise StartError(f"working_dir {str(cwd)!r} is not a directory on this node")
        argv = ["/bin/sh", "-c", WRAPPER_SCRIPT, "corral-component", str(exit_file), *target]
        env = {**env, "CORRAL_COMPONENT_DIR": str(files_dir(self.components_dir, rec))}
        try:
            with open(run / "stdout.log", "ab") as out, open(run / "stderr.log", "ab") as err:
                popen = process_tree.popen_in_session(argv, cwd, env, out, err)
        except OSError as exc:
            raise StartError(f"could not start: {exc}") from exc
        with self._lock:
            self._children[rec.key] = popen
        rec.pid = popen.pid
        rec.create_time = process_tree.create_time(popen.pid)

    def survey(self) -> dict[str, Found]:
        """Nothing: a process is found again by the pid its record holds."""
        return {}

    def adopt(self, rec: ComponentRecord, found: dict[str, Found]) -> Exit | None:
        """After an agent restart: None when the recorded process still runs (watched from now on), else its end."""
        proc = process_tree.find_process(rec.pid, rec.create_time) if rec.pid is not None else None
        if proc is not None:
            with self._lock:
                self._adopted[rec.key] = proc
            return None
        return Exit(self._exit_status(rec)[1])

    def remove(self, found: Found) -> None:
        """Nothing to remove: survey() finds nothing."""

    def _exit_status(self, rec: ComponentRecord) -> tuple[bool, int | None]:
        """Whether the wrapper has ended, and the exit code if known."""
        with self._lock:
            return process_tree.wrapper_exit_status(rec.key, self._children, self._adopted, self.run_dir(rec))

    def watch(self, running: list[ComponentRecord]) -> list[ComponentRecord]:
        """Every one: looking at a process is inspect() itself."""
        return running

    def inspect(self, rec: ComponentRecord) -> Exit | None:
        """None while it runs; else its exit code and an error message with the stderr tail."""
        ended, code = self._exit_status(rec)
        if not ended:
            return None
        reason = f"exited with code {code}" if code is not None else "ended without an exit status"
        return Exit(code, process_tree.with_stderr_tail(reason, self.run_dir(rec)))

    def may_run(self, rec: ComponentRecord, prior: str) -> bool:
        """Whether a process was spawned for it."""
        return rec.pid is not None

    def stop(self, rec: ComponentRecord, grace_seconds: float) -> int | None:
        """SIGTERM the whole tree, SIGKILL what is left after ``grace_seconds``; returns the exit code."""
        if rec.pid is None:
            return None
        pid = rec.pid
        stop = process_tree.GraceStop.begin(
            pid, grace_seconds, time.monotonic(), process_tree.group_leftovers(pid, rec.create_time)
        )
        while True:
            ended, code = self._exit_status(rec)
            remaining = stop.remaining()
            if ended and not remaining:
                break
            now = time.monotonic()
            if stop.given_up(now):
                logger.warning("%s: processes survived SIGKILL: %s", rec.describe(), [p.pid for p in remaining])
                break
            was_killed = stop.killed
            killed = stop.escalate(now)
            if killed and not was_killed:
                logger.warning("%s: grace over, SIGKILL to %d processes", rec.describe(), len(killed))
            time.sleep(STOP_POLL_SECONDS)
        with self._lock:
            self._adopted.pop(rec.key, None)
        return stop.exit_code(code)

    def stats(self, rec: ComponentRecord) -> dict[str, Any] | None:
        """CPU % (of one core, summed over the tree) and resident memory of the component's process tree."""
        if rec.pid is None:
            return None
        cpu = 0.0
        rss = 0
        for proc in process_tree.collect_tree(rec.pid, rec.pid):
            try:
                known = self._measured.get(proc.pid)
                if known is None or known.create_time() != proc.create_time():
                    known = self._measured[proc.pid] = proc
                cpu += known.cpu_percent(interval=None)
                rss += known.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return {"cpu_percent": round(cpu, 2), "memory_mb": round(rss / (1024 * 1024), 2), "gpu_percent": None}

    def tidy(self) -> None:
        """Drop psutil handles of processes that are gone."""
        for pid in [pid for pid, proc in self._measured.items() if not process_tree.is_alive(proc)]:
            del self._measured[pid]

    def forget(self, rec: ComponentRecord) -> None:
        """Let go of the component's handles; a child still running is left to run."""
        with self._lock:
            self._adopted.pop(rec.key, None)
            popen = self._children.pop(rec.key, None)
        if popen is not None:
            process_tree.leave_running([popen])

    def close(self) -> None:
        """Leave every process running (they outlive the agent); keep their Popen objects quiet."""
        with self._lock:
            process_tree.leave_running(self._children.values())
            self._children.clear()
