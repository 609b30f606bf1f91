"""The heartbeat thread: the node's figures into Redis at once after joining, then every interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
from redis import Redis
from redis.exceptions import RedisError

from shared import heartbeat

logger = logging.getLogger(__name__)


class HeartbeatThread:
    """Writes ``figures()`` with shared.heartbeat.write every ``interval`` seconds until stopped."""

    def __init__(
        self,
        redis: Redis,
        node_id: str,
        interval: float,
        figures: Callable[[], dict[str, Any]],
        failing: bool = False,
        key: bytes | None = None,
    ) -> None:
        self.redis = redis
        self.key = key  # the node's key from its join: the manager believes only summaries signed with it
        self._clock_offset: float | None = None  # Redis's clock minus this host's, from the last write
        self.node_id = node_id
        self.interval = interval
        self.figures = figures
        self.beats = 0
        self._stop = threading.Event()
        self._failing = failing  # a predecessor's outage still on: the first beat that works says it ended
        self._thread = threading.Thread(target=self._run, name="corral-heartbeat", daemon=True)

    def start(self) -> HeartbeatThread:
        psutil.cpu_percent(interval=None)  # primes the non-blocking CPU figure of the first beat
        self._thread.start()
        return self

    @property
    def failing(self) -> bool:
        """Whether the last beat failed."""
        return self._failing

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def beat(self) -> bool:
        """Write one heartbeat; warns once per Redis outage instead of on every tick."""
        try:
            if self._clock_offset is None:
                self._clock_offset = heartbeat.redis_now(self.redis) - time.time()
            stamped = heartbeat.write(self.redis, self.node_id, self.figures(), self.key, self._clock_offset)
            self._clock_offset = stamped - time.time()
        except RedisError as exc:
            if not self._failing:
                logger.warning("node %s: heartbeat failed, will keep trying: %s", self.node_id, exc)
            self._failing = True
            return False
        if self._failing:
            logger.info("node %s: heartbeat written again", self.node_id)
            self._failing = False
        self.beats += 1
        return True

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                logger.exception("node %s: heartbeat figures failed", self.node_id)
            if self._stop.wait(self.interval):
                return
