"""Component state reports on their way to Redis: sent in order, held back (and retried) while Redis is down,
and a final one (failed, stopped) sent again until the manager acknowledges it (shared.acks)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from shared import acks
from shared.states import ComponentState

from ..report_acks import PendingAcks

logger = logging.getLogger(__name__)

PUBLISH_RETRY_SECONDS = 2.0
"""Pause between two attempts to publish held-back reports while Redis is unreachable."""

MAX_HELD = 10_000
"""Most state reports held back while Redis is unreachable; the oldest go first (a restart re-reports)."""


class Outbox:
    """Publishes state reports in order with ``publish`` (which raises when it could not)."""

    def __init__(
        self,
        node_id: str,
        publish: Callable[[dict[str, Any]], object],
        redis: Callable[[], Redis | None] | None = None,
        what: str = "component reports",
    ) -> None:
        self.node_id = node_id
        self.what = what  # what the log lines call the reports: "component reports", "app instance reports"
        self._redis = redis  # given, final reports wait for their acknowledgment
        self.unacknowledged = PendingAcks(node_id, acks.COMPONENT)
        self.retry_seconds = PUBLISH_RETRY_SECONDS
        self._publish = publish
        self._held: deque[dict[str, Any]] = deque(maxlen=MAX_HELD)
        self._lock = threading.Lock()
        self._failing = False
        self._retry_after = 0.0

    def add(self, report: dict[str, Any]) -> None:
        with self._lock:
            self._held.append(report)

    def empty(self) -> bool:
        """Whether every report was published, and every final one acknowledged."""
        with self._lock:
            return not self._held and not self.unacknowledged

    def flush_soon(self) -> None:
        """Publish now unless Redis is known to be failing; then the next periodic flush retries in order."""
        if not self._failing:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if self._failing and time.monotonic() < self._retry_after:
                return
            while self._held:
                try:
                    self._publish(self._held[0])
                except Exception as exc:
                    if not self._failing:
                        logger.warning("node %s: %s not published, will retry: %s", self.node_id, self.what, exc)
                    self._failing = True
                    self._retry_after = time.monotonic() + self.retry_seconds
                    return
                report = self._held.popleft()
                if self._redis is not None and not ComponentState(report["status"]).active:
                    self.unacknowledged.sent(acks.component_name(report), report)
            self._check_acknowledgments()
            if self._failing:
                logger.info("node %s: publishing %s again", self.node_id, self.what)
                self._failing = False

    def _check_acknowledgments(self) -> None:
        """Now and then while final reports wait: forget the acknowledged, queue again those due (lock held)."""
        redis = self._redis() if self._redis is not None else None
        if redis is None or not self.unacknowledged.check_due():
            return
        try:
            _acknowledged, again = self.unacknowledged.check(redis)
        except RedisError as exc:
            logger.warning("node %s: could not read acknowledgments of component reports: %s", self.node_id, exc)
            return
        self._held.extend(again)  # published on the next flush, behind what is queued
