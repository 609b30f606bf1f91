"""The driver interface, its implementations, and the one stop with grace they share (real processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support import wait_until
from worker_agent import process_tree
from worker_agent.components.image_fetch import SftpSettings
from worker_agent.drivers.base import Driver
from worker_agent.drivers.docker import DockerDriver
from worker_agent.drivers.mock import MockDriver
from worker_agent.drivers.process import ProcessDriver


def test_every_driver_implements_the_interface(tmp_path: Path) -> None:
    drivers = [ProcessDriver(tmp_path), DockerDriver(None, "node-1", tmp_path, SftpSettings()), MockDriver()]
    for driver in drivers:
        assert isinstance(driver, Driver), type(driver).__name__
        assert isinstance(driver.engine, str) and driver.check_interval >= 0


def spawn_group(script: str, tmp_path: Path) -> int:
    popen = process_tree.popen_in_session(["/bin/sh", "-c", script], tmp_path, {}, None, None)
    process_tree.leave_running([popen])  # reaped by the data_dir fixture's clean-up, or here below
    wait_until(lambda: len(process_tree.group_members(popen.pid)) >= 2, what="the shell and its sleep")
    return popen.pid


def reap(pid: int) -> None:
    for popen in [p for p in process_tree.LEFT_RUNNING if p.pid == pid]:
        popen.wait(timeout=5)
        process_tree.LEFT_RUNNING.remove(popen)


def test_a_tree_that_obeys_sigterm_ends_within_the_grace(tmp_path: Path) -> None:
    pid = spawn_group("sleep 30 & wait", tmp_path)
    stop = process_tree.GraceStop.begin(pid, 5.0, time.monotonic())
    assert {p.pid for p in stop.targets} >= {pid}
    wait_until(lambda: not stop.remaining(), what="the tree to end on SIGTERM")
    assert stop.escalate(time.monotonic()) == []  # grace not over: no SIGKILL
    assert stop.exit_code(None) == -signal.SIGTERM and stop.exit_code(3) == 3
    reap(pid)


def test_a_tree_that_ignores_sigterm_gets_sigkill_once_the_grace_is_over(tmp_path: Path) -> None:
    pid = spawn_group("trap '' TERM; sleep 30 & wait; sleep 30", tmp_path)
    start = time.monotonic()
    stop = process_tree.GraceStop.begin(pid, 30.0, start)  # the clock is the caller's: no need to wait the grace
    time.sleep(0.2)
    assert stop.escalate(start + 29.0) == [] and stop.remaining()  # still in its grace, still there
    killed = stop.escalate(start + 30.0)
    assert pid in {p.pid for p in killed} and stop.killed
    wait_until(lambda: not stop.remaining(), what="the tree to vanish after SIGKILL")
    assert stop.exit_code(None) == -signal.SIGKILL
    assert not stop.given_up(stop.kill_at) and stop.given_up(stop.kill_at + process_tree.SIGKILL_GIVE_UP_SECONDS)
    reap(pid)
    assert os.getpgrp() != pid  # never our own group


def test_the_process_driver_stops_a_component_tree_with_the_shared_stop(tmp_path: Path) -> None:
    from worker_agent.components.records import ComponentRecord

    driver = ProcessDriver(tmp_path / "components")
    rec = ComponentRecord("biz-1", "web", 1, type="process", spec={"command": "trap '' TERM; sleep 30"})
    (tmp_path / "components" / "biz-1" / "web" / "files").mkdir(parents=True)
    steps: list[str] = []
    driver.start(rec, {}, [], steps.append, lambda: None)
    assert steps == ["starting"] and rec.pid is not None
    pid = rec.pid
    # Its sleep runs: the trap is in place (else a loaded host may deliver SIGTERM before it).
    wait_until(lambda: any(p.name() == "sleep" for p in process_tree.group_members(pid)), what="the sleep")
    assert driver.inspect(rec) is None
    assert driver.stop(rec, 0.3) == -signal.SIGKILL  # ignored SIGTERM: killed at the end of the grace
    ended = driver.inspect(rec)
    assert ended is not None
    driver.forget(rec)
    driver.close()
