"""Process components: a supervised process tree in a session of its own that outlives the agent.

The command runs under a small /bin/sh wrapper that leaves its exit status in a file, so the status is
known even when the agent was down while it ended; the agent finds the process again by pid + start time.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from .. import process_tree
from ..components.records import ComponentRecord
from .base import StartError

logger = logging.getLogger(__name__)

WRAPPER_SCRIPT = 'f="$1"; shift; "$@"; rc=$?; echo "$rc" > "$f.tmp" && mv -f "$f.tmp" "$f"; exit "$rc"'
"""Runs ``$2...`` and leaves its exit status in the file ``$1``, agent or not."""

KILL_GIVE_UP_SECONDS = 10.0
"""After SIGKILL, how long to wait for the tree to vanish before calling it stopped anyway."""

_LEFT_RUNNING: list[subprocess.Popen[bytes]] = []
"""Children a closed driver left running on purpose; kept so Popen.__del__ never warns about them."""


class ProcessDriver:
    """Starts, watches, measures and stops the process components of one node."""

    def __init__(self, components_dir: Path) -> None:
        self.components_dir = components_dir
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._adopted: dict[str, psutil.Process] = {}
        self._measured: dict[int, psutil.Process] = {}  # kept between calls: cpu_percent needs the last sample

    def run_dir(self, rec: ComponentRecord) -> Path:
        """Logs and exit status of one generation."""
        return self.components_dir / rec.business_id / rec.component_id / f"gen-{rec.generation}"

    def files_dir(self, rec: ComponentRecord) -> Path:
        return self.components_dir / rec.business_id / rec.component_id / "files"

    def start(self, rec: ComponentRecord, spec: Mapping[str, Any], env: Mapping[str, str]) -> None:
        """Spawn the component; sets rec.pid and rec.create_time."""
        run_dir = self.run_dir(rec)
        run_dir.mkdir(parents=True, exist_ok=True)
        exit_file = run_dir / process_tree.EXIT_CODE_FILE
        exit_file.unlink(missing_ok=True)
        command: str = spec["command"]
        args: list[str] = list(spec.get("args") or [])
        target = [command, *args] if args else ["/bin/sh", "-c", command]
        cwd = Path(spec["working_dir"]) if spec.get("working_dir") else self.files_dir(rec)
        if not cwd.is_dir():
            raise StartError(f"working_dir {str(cwd)!r} is not a directory on this node")
        argv = ["/bin/sh", "-c", WRAPPER_SCRIPT, "corral-component", str(exit_file), *target]
        try:
            with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
                popen = process_tree.popen_in_session(argv, cwd, env, out, err)
        except OSError as exc:
            raise StartError(f"could not start: {exc}") from exc
        self._children[rec.key] = popen
        rec.pid = popen.pid
        rec.create_time = process_tree.create_time(popen.pid)

    def adopt(self, rec: ComponentRecord) -> bool:
        """After an agent restart: whether the recorded process still runs (and watch it if so)."""
        if rec.pid is None:
            return False
        proc = process_tree.find_process(rec.pid, rec.create_time)
        if proc is None:
            return False
        self._adopted[rec.key] = proc
        return True

    def exit_status(self, rec: ComponentRecord) -> tuple[bool, int | None]:
        """Whether the wrapper has ended, and the exit code if known."""
        return process_tree.wrapper_exit_status(rec.key, self._children, self._adopted, self.run_dir(rec))

    def poll(self, rec: ComponentRecord) -> tuple[int | None, str] | None:
        """None while it runs; else (exit code, error message with the stderr tail)."""
        ended, code = self.exit_status(rec)
        if not ended:
            return None
        reason = f"exited with code {code}" if code is not None else "ended without an exit status"
        return code, process_tree.with_stderr_tail(reason, self.run_dir(rec))

    def stop(self, rec: ComponentRecord, grace_seconds: float) -> int | None:
        """SIGTERM the whole tree, SIGKILL what is left after ``grace_seconds``; returns the exit code."""
        if rec.pid is None:
            return None
        pid = rec.pid
        leftovers = process_tree.group_leftovers(pid, rec.create_time)
        process_tree.signal_tree(leftovers, pid, signal.SIGTERM)
        kill_at = time.monotonic() + grace_seconds
        killed = False
        while True:
            ended, code = self.exit_status(rec)
            remaining = [p for p in leftovers if process_tree.is_alive(p)] or process_tree.group_members(pid)
            if ended and not remaining:
                break
            now = time.monotonic()
            if now >= kill_at:
                if now >= kill_at + KILL_GIVE_UP_SECONDS:
                    logger.warning("%s: processes survived SIGKILL: %s", rec.describe(), [p.pid for p in remaining])
                    break
                if not killed:
                    logger.warning("%s: grace over, SIGKILL to %d processes", rec.describe(), len(remaining))
                killed = True
                process_tree.signal_tree(process_tree.collect_tree(pid, pid, remaining), pid, signal.SIGKILL)
            time.sleep(0.05)
        self._adopted.pop(rec.key, None)
        if code is None:
            # Only a signal ends the wrapper without its exit-code file; assume ours.
            code = -(signal.SIGKILL if killed else signal.SIGTERM)
        return code

    def usage(self, rec: ComponentRecord) -> dict[str, Any] | None:
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

    def forget(self, rec: ComponentRecord) -> None:
        self._adopted.pop(rec.key, None)
        popen = self._children.pop(rec.key, None)
        if popen is not None and popen.poll() is None:
            _LEFT_RUNNING.append(popen)

    def prune_measured(self) -> None:
        """Drop psutil handles of processes that are gone."""
        for pid in [pid for pid, proc in self._measured.items() if not process_tree.is_alive(proc)]:
            del self._measured[pid]

    def close(self) -> None:
        """Leave every process running (they outlive the agent); keep their Popen objects quiet."""
        _LEFT_RUNNING.extend(p for p in self._children.values() if p.poll() is None)
        self._children.clear()
