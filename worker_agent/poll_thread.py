"""The one monitor thread of a watcher (the task Supervisor, the ComponentManager, the fleet commands' publisher):
a poll round every interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

IDLE_INTERVAL = 5.0
"""Seconds between two rounds while the owner says it has nothing to watch."""


class PollThread:
    """Calls ``poll`` every ``interval`` seconds in a daemon thread until closed; a failing round is logged and
    the next one runs anyway, so one bad round never ends the watching."""

    def __init__(
        self,
        name: str,
        poll: Callable[[], None],
        interval: float,
        what: str,
        idle: Callable[[], bool] | None = None,
        idle_interval: float = IDLE_INTERVAL,
        wait: Callable[[], float] | None = None,
        final_round: bool = False,
        join_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.interval = interval
        self.what = what  # names the owner in the log line of a failed round, e.g. "node <id>: supervisor"
        self._poll = poll
        # An owner with nothing to watch is polled every idle_interval instead, and woken by wake() when
        # work arrives: thousands of idle agents then cost their hosts next to nothing.
        self._idle = idle
        self.idle_interval = max(idle_interval, interval)
        self._wait = wait  # given, it says how long to wait before each round, instead of interval and idle
        self.final_round = final_round  # a round once more after close(): what it publishes goes out at once
        self.join_seconds = join_seconds
        self.closing = threading.Event()  # set from close() on: the owner's long work may give up early on it
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Run the next round now (and at the busy interval after it): the owner has something to watch."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread (again after a close); a second start while it runs does nothing."""
        if self._thread is not None:
            return
        self.closing.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the round under way (waiting up to join_seconds for it); also when never started."""
        self.closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)
            self._thread = None

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._timeout())
            self._wake.clear()
            if self.closing.is_set() and not self.final_round:
                return
            try:
                self._poll()
            except Exception:
                logger.exception("%s poll failed", self.what)
            if self.closing.is_set():
                return

    def _timeout(self) -> float:
        try:
            if self._wait is not None:
                return self._wait()
            return self.idle_interval if self._idle is not None and self._idle() else self.interval
        except Exception:
            logger.exception("%s idle check failed", self.what)
            return self.interval
