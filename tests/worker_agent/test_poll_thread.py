"""The monitor thread's pace: busy while its owner has something to watch, idle otherwise, woken at once."""

from __future__ import annotations

import threading
import time

from tests.support import wait_until
from worker_agent.poll_thread import PollThread


def test_an_idle_owner_is_polled_at_the_idle_pace_and_woken_at_once() -> None:
    rounds: list[float] = []
    idle = threading.Event()
    idle.set()
    thread = PollThread("t", lambda: rounds.append(time.monotonic()), 0.02, "test", idle=idle.is_set, idle_interval=60)
    thread.start()
    try:
        woken_at = time.monotonic()
        thread.wake()
        wait_until(lambda: len(rounds) == 1, timeout=2, what="the round a wake() asks for")
        assert rounds[0] - woken_at < 1.0
        # Still idle: the next round is a minute away, so the busy pace never starts by itself.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            assert len(rounds) == 1, "an idle owner was polled at the busy pace"
            time.sleep(0.02)
        idle.clear()
        thread.wake()
        wait_until(lambda: len(rounds) >= 5, timeout=2, what="rounds at the busy pace")
    finally:
        thread.close()
    count = len(rounds)
    time.sleep(0.1)
    assert len(rounds) == count, "rounds went on after close()"
