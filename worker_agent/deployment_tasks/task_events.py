"""The events of deployment tasks: published in order, retried while Redis is down, and sent again until the
manager acknowledges them (shared.acks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from shared import acks
from shared.states import TaskState

from ..report_acks import PendingAcks
from .records import STARTING, TaskRecord

logger = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], object]
"""Appends one task event to the events stream; raises when it could not."""

PUBLISH_RETRY_SECONDS = 2.0
"""Pause between two attempts to publish held-back events while Redis is unreachable."""


class TaskEvents:
    """Publishes the events of the tasks of one node and keeps track of their acknowledgments."""

    def __init__(self, node_id: str, publish: Publish, redis: Callable[[], Redis | None] | None = None) -> None:
        self.node_id = node_id
        self._publish = publish
        # Given Redis, each event waits for the manager's acknowledgment and goes again until then (shared.acks).
        self._redis = redis
        self.unacked = PendingAcks(node_id, acks.TASK)
        self._failing = False
        self._retry_after = 0.0

    def event(self, rec: TaskRecord) -> dict[str, Any]:
        """The event of the task's current state, as the events stream takes it."""
        return {
            "task_id": rec.task_id,
            "deployment_id": rec.deployment_id,
            "node_id": self.node_id,
            "state": rec.state,
            "at": time.time(),
            "pid": rec.pid,
            "exit_code": rec.exit_code,
            "started_at": rec.started_at,
            "error": rec.error,
        }

    def publish(self, rec: TaskRecord) -> bool:
        """Publish the event of the task's current state; whether it went out."""
        event = self.event(rec)
        try:
            self._publish(event)
        except Exception as exc:
            if not self._failing:
                logger.warning(
                    "node %s task %s: could not publish %s event, will retry: %s",
                    self.node_id,
                    rec.task_id,
                    rec.state,
                    exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("node %s task %s: publishing events again", self.node_id, rec.task_id)
            self._failing = False
        if self._redis is not None:
            rec.acked = False
            for state in TaskState:  # an older state's event needs no acknowledgment any more
                if state.value != rec.state:
                    self.unacked.forget(f"{rec.task_id}:{state.value}")
            self.unacked.sent(f"{rec.task_id}:{rec.state}", event)
        return True

    def check_acknowledgments(self, records: dict[str, TaskRecord]) -> bool:
        """Now and then while events wait: note the acknowledged ones, mark those due to go again; whether a record
        changed (the caller's lock held)."""
        redis = self._redis() if self._redis is not None else None
        if redis is None or not self.unacked.check_due():
            return False
        try:
            acknowledged, again = self.unacked.check(redis)
        except RedisError as exc:
            logger.warning("node %s: could not read acknowledgments of task events, will retry: %s", self.node_id, exc)
            return False
        for name in acknowledged:
            rec = records.get(name.rpartition(":")[0])
            if rec is not None and f"{rec.task_id}:{rec.state}" == name:
                rec.acked = True
        for event in again:
            rec = records.get(event["task_id"])
            if rec is not None and rec.state == event["state"]:
                rec.reported = False  # _retry_unreported publishes it again, in order
        return bool(acknowledged)

    def retry_unreported(self, records: dict[str, TaskRecord]) -> bool:
        """Publish again, in order, the events that did not go out; whether a record changed (caller's lock held)."""
        if time.monotonic() < self._retry_after:
            return False
        changed = False
        for rec in records.values():
            if rec.reported or rec.state == STARTING or rec.state == TaskState.STOPPING:
                continue
            if not self.publish(rec):
                # Still failing: keep the order, and do not hold the lock on a dead Redis every round.
                self._retry_after = time.monotonic() + PUBLISH_RETRY_SECONDS
                break
            rec.reported = True
            changed = True
        return changed
