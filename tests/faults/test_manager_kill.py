"""Fault: the manager is killed (kill -9: the launcher, with its duties thread, and gunicorn's whole process
group, master and workers mid-request) under a storm of writes, then restarted on the same data dir. Its
private redis-server must not outlive it (die_with_parent: it flushes its AOF and exits); after the restart
SQLite's integrity_check is ok, every write answered 2xx is there, and the real agent that ran throughout
was never judged offline (no node.offline audit entry, never read offline through the API)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Agent, Manager
from tests.faults.faults_support import (
    OfflineWatcher,
    Writers,
    audit,
    integrity_check,
    launcher_tree,
    manager_and_agent,
    nodes,
    online,
)
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.e2e

WRITERS = 8
WRITES_BEFORE_KILL = 40
INTERVAL = 1.0  # the agent's heartbeat
WINDOW = 3 * INTERVAL  # the manager's default: offline after 3 intervals without a heartbeat
HOSTNAME = "survivor-1"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, Agent]]:
    with manager_and_agent(tmp_path, HOSTNAME, INTERVAL) as (manager, agent, _leftovers):
        yield manager, agent


def test_a_manager_killed_mid_storm_loses_no_answered_write(stack: tuple[Manager, Agent]) -> None:
    manager, agent = stack
    wait_until(lambda: online(manager, HOSTNAME), timeout=30, what="the node online")
    node_id = nodes(manager)[HOSTNAME]["id"]
    before = launcher_tree(manager)

    with OfflineWatcher(manager, {HOSTNAME}) as watcher:
        with Writers(manager, WRITERS) as writers:
            wait_until(lambda: writers.written() >= WRITES_BEFORE_KILL, timeout=30, what="writes under way")
            at_kill = writers.written()
            # kill -9 as a supervisor's "kill the whole unit" does it: the launcher and gunicorn's group at once.
            os.kill(manager.pid, signal.SIGKILL)
            os.killpg(before["gunicorn"][0], signal.SIGKILL)
            killed = time.monotonic()
            assert manager.popen is not None
            manager.popen.wait(10)
            every = [pid for pids in before.values() for pid in pids]
            wait_until(
                lambda: not [pid for pid in every if pid_alive(pid)],
                timeout=20,
                what=f"every process of the killed manager gone (redis-server {before['redis']} outlived it?)",
            )
            redis_gone = time.monotonic() - killed
            manager.start()  # the same port, the same data dir
            restarted = time.monotonic() - killed
            after_restart, back = writers.written(), time.monotonic()
            # Writes again, and two offline windows watched: a false offline would be judged within them.
            wait_until(
                lambda: (
                    writers.written() >= after_restart + WRITES_BEFORE_KILL and time.monotonic() - back >= 2 * WINDOW
                ),
                timeout=30,
                what="writes after the restart",
            )
        # Through the restart, with the storm over: the agent beats on, the duties have judged it since.
        wait_until(lambda: online(manager, HOSTNAME), timeout=10, what=f"the node online\n{agent.output()[-3000:]}")

    assert integrity_check(manager.db_path) == "ok"
    writers.check_all_present(manager)
    offline_entries = [e for e in audit(manager, "node.offline") if e["target"] == node_id]
    assert not offline_entries, f"the live agent was judged offline: {offline_entries}\n{manager.output()[-3000:]}"
    assert not watcher.offline, f"the live agent read offline at {watcher.offline[:5]}"
    assert agent.alive()
    print(
        f"\nkill -9 after {at_kill} writes; old processes gone in {redis_gone:.2f} s, API back in {restarted:.2f} s; "
        f"2xx: {len(writers.templates())} templates, {len(writers.tasks())} tasks, all present; "
        f"{writers.failures()} requests failed (manager down); integrity ok; node reads: {watcher.reads}, "
        f"0 offline"
    )
    assert manager.terminate() == 0
    assert integrity_check(manager.db_path) == "ok"
