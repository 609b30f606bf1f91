"""The process of one app instance as its thread holds it: spawned by this agent (a Popen) or adopted after an
agent restart (a psutil.Process), the grace stop under way (the signal, then SIGKILL), how it ended, and the
pidfd its thread sleeps on to learn of its exit at once (wakeup.py).

Kept apart from instance.py, which decides what happens to the instance; here is only what is known of its
process and how it is made to end.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import psutil

from .. import process_tree
from . import launch, wakeup

logger = logging.getLogger(__name__)


class InstanceProcess:
    """What runs for an instance, if anything; ``run_dir`` holds the exit status its launch script leaves."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.popen: subprocess.Popen[bytes] | None = None
        self.adopted: psutil.Process | None = None
        self.grace: process_tree.GraceStop | None = None
        self.end_code: int | None = None
        self._exit_fd: tuple[int, int] | None = None  # (pid, pidfd) of the process being watched

    def exit_status(self, pid: int | None) -> tuple[bool, int | None]:
        """(ended, its status) of the process recorded with ``pid``; an adopted one's status is read from its
        exit file."""
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                return False, None
            self.popen = None
            return True, code
        if self.adopted is not None and process_tree.is_alive(self.adopted):
            return False, None
        self.adopted = None
        if pid is None:
            return True, None
        return True, process_tree.read_exit_code(self.run_dir)

    def send(self, pid: int, create_time: float | None, sig: int, grace_seconds: float, now: float) -> float:
        """Signal the process group and its tree with ``sig``; SIGKILL follows at the kill_at answered (gone)."""
        self.grace = process_tree.GraceStop.prepare(
            pid, grace_seconds, now, process_tree.group_leftovers(pid, create_time)
        )
        process_tree.signal_tree(self.grace.targets, pid, launch.as_signal(sig))
        return self.grace.kill_at

    def gone(self, now: float, pid: int | None, who: str) -> bool:
        """Whether nothing is left of the process tree being stopped (SIGKILL to what is, once the grace is over).
        ``who`` names the instance in the log."""
        ended, code = self.exit_status(pid)
        if ended:
            self.end_code = code
        grace = self.grace
        if grace is None:
            return ended
        if ended and not grace.remaining():
            return True
        if grace.given_up(now):
            logger.warning("%s: processes survived SIGKILL", who)
            return True
        if grace.escalate(now):
            logger.warning("%s: grace over, SIGKILL", who)
        return False

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
