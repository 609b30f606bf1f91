"""Work queues keyed by component: the work of one key runs in order, different keys in parallel."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)


class SerialWork:
    """Runs the work of each key in order, one thread per key that has work, gone when the key is idle."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, str], deque[Callable[[], None]]] = {}

    def submit(self, key: tuple[str, str], work: Callable[[], None]) -> None:
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(work)
                return
            self._queues[key] = deque([work])
        threading.Thread(target=self._drain, args=(key,), name=f"{self._name}-{key[1]}", daemon=True).start()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._queues)

    def _drain(self, key: tuple[str, str]) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    return
                work = queue[0]
            try:
                work()
            except Exception:
                logger.exception("business %s component %s: component work failed", *key)
            finally:
                with self._lock:
                    queue.popleft()
