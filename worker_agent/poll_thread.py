"""The one monitor thread of a watcher (the task Supervisor, the ComponentManager): a poll round every interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class PollThread:
    """Calls ``poll`` every ``interval`` seconds in a daemon thread until closed; a failing round is logged and
    the next one runs anyway, so one bad round never ends the watching."""

    def __init__(self, name: str, poll: Callable[[], None], interval: float, what: str) -> None:
        self.name = name
        self.interval = interval
        self.what = what  # names the owner in the log line of a failed round, e.g. "node <id>: supervisor"
        self._poll = poll
        self.closing = threading.Event()  # set from close() on: the owner's long work may give up early on it
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (again after a close); a second start while it runs does nothing."""
        if self._thread is not None:
            return
        self.closing.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the round under way (waiting up to 5 s for it); also when never started."""
        self.closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while not self.closing.wait(self.interval):
            try:
                self._poll()
            except Exception:
                logger.exception("%s poll failed", self.what)
