"""The command output reader is woken by a command's exit itself (a pidfd), not by its next look."""

from __future__ import annotations

import os
import subprocess
import threading

from worker_agent.fleet_commands.output import OutputReader


def test_a_watched_exit_wakes_the_reader_at_once() -> None:
    """With no pipe and a tick that asks to wait for ever, only the exit of the watched process can wake the
    reader: a tick must see the process exited within a fraction of a second of its exit."""
    saw_exit = threading.Event()
    pids: list[int] = []

    def tick() -> float | None:
        # Exited yet? (WNOWAIT: left for the test to reap.)
        if pids and os.waitid(os.P_PID, pids[0], os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            saw_exit.set()
        return None  # wait until something happens

    reader = OutputReader("node-test", lambda: None, tick).start()
    child = subprocess.Popen(["sleep", "0.3"])
    pids.append(child.pid)
    try:
        reader.watch_exit(child.pid)  # its hand-over's round ticks once, 0.3 s before the exit
        assert saw_exit.wait(2.0), "the reader was not woken by the exit"
        assert child.wait(timeout=1) == 0
    finally:
        reader.close()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_watching_a_process_already_reaped_is_harmless() -> None:
    reader = OutputReader("node-test", lambda: None, lambda: None).start()
    child = subprocess.Popen(["true"])
    child.wait()
    try:
        reader.watch_exit(child.pid)  # gone: no pidfd, nothing registered, no error
    finally:
        reader.close()
