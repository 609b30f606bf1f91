"""Background duties, run once per manager (a thread of the launcher) under a Redis lock.

(a) consume the agents' task events and apply them to the database; (b) every tick, persist which
nodes went online/offline. The lock keeps two manager hosts on one Redis from both doing it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from marshmallow import ValidationError
from peewee import OperationalError
from redis import Redis
from redis.exceptions import RedisError, ResponseError

from shared import events, keys

from . import db
from .config import Settings
from .services import events as event_service
from .services import nodes

logger = logging.getLogger(__name__)

LOCK_TTL_MS = 10_000
"""The lock expires this long after its holder stops renewing it (renewed every tick)."""

BATCH = 500
"""Stream entries read per XREADGROUP."""

CLAIM_IDLE_MS = 60_000
"""Entries another consumer left pending this long are taken over (that manager host died)."""

_LOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

_UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Duties:
    """The duties thread: lock, node statuses every ``tick`` seconds, events in between."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis | None = None,
        tick: float = 1.0,
        block_ms: int = 1000,
        consumer: str | None = None,
    ) -> None:
        if redis is None and not settings.redis_url:
            raise ValueError("Duties need a Redis")
        # Socket timeout well above the XREADGROUP block time, or every idle read would time out.
        self.redis = redis or Redis.from_url(
            settings.redis_url or "", socket_timeout=block_ms / 1000 + 5, socket_connect_timeout=3
        )
        self.settings = settings
        self.tick = tick
        self.block_ms = block_ms
        self.consumer = consumer or f"duties-{socket.gethostname()}"
        self.lock_token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holding = False
        self._group_ready = False
        self._pending_done = False
        self._next_claim = 0.0

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Run the duties in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="corral-duties", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the duties thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def holds_lock(self) -> bool:
        """Whether this instance held the duties lock at its last renewal."""
        return self._holding

    def run(self) -> None:
        """The loop; returns when stop() is called."""
        logger.info("duties started (consumer %s)", self.consumer)
        backoff = 0.5
        outage = False
        next_check = 0.0
        try:
            while not self._stop.is_set():
                try:
                    db.connect()
                    if not self._hold_lock():
                        self._stop.wait(self.tick)
                        continue
                    if time.monotonic() >= next_check:
                        next_check = time.monotonic() + self.tick
                        nodes.refresh_statuses(self.redis, self.settings.offline_after_intervals)
                    self._consume_events(next_check)
                    if outage:
                        logger.info("duties: redis reachable again (consumer %s)", self.consumer)
                        outage, backoff = False, 0.5
                except RedisError as exc:
                    if not outage:
                        logger.warning(
                            "duties: redis unavailable, retrying (consumer %s): %s", self.consumer, exc
                        )
                        outage = True
                    self._group_ready = self._pending_done = self._holding = False
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                except Exception:
                    logger.exception("duties: unexpected error (consumer %s); going on", self.consumer)
                    db.close()
                    self._stop.wait(1.0)
        finally:
            self._release_lock()
            db.close()
            logger.info("duties stopped (consumer %s)", self.consumer)

    # -- the lock -------------------------------------------------------------------------------
    def _hold_lock(self) -> bool:
        held = bool(self.redis.eval(_LOCK_SCRIPT, 1, keys.DUTIES_LOCK, self.lock_token, LOCK_TTL_MS))
        if held != self._holding:
            if held:
                logger.info("duties lock %s taken by %s", keys.DUTIES_LOCK, self.lock_token)
            else:
                logger.warning("duties lock %s held elsewhere; %s waits", keys.DUTIES_LOCK, self.lock_token)
                self._pending_done = False
            self._holding = held
        return held

    def _release_lock(self) -> None:
        try:
            self.redis.eval(_UNLOCK_SCRIPT, 1, keys.DUTIES_LOCK, self.lock_token)
        except RedisError as exc:
            logger.warning("duties lock %s not released by %s: %s", keys.DUTIES_LOCK, self.lock_token, exc)

    # -- events ---------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(keys.EVENTS_STREAM, keys.EVENTS_GROUP, id="0", mkstream=True)
            logger.info("consumer group %s created on %s", keys.EVENTS_GROUP, keys.EVENTS_STREAM)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _read(self, stream_id: str, block_ms: int | None) -> list[tuple[Any, dict[Any, Any]]]:
        reply = self.redis.xreadgroup(
            keys.EVENTS_GROUP, self.consumer, {keys.EVENTS_STREAM: stream_id}, count=BATCH, block=block_ms
        )
        if not reply:
            return []
        return list(reply[0][1])

    def _consume_events(self, deadline: float) -> None:
        try:
            if not self._group_ready:
                self._ensure_group()
            if not self._pending_done:
                # Entries read before a crash or restart but never acked: ours first.
                while entries := self._read("0", None):
                    if not self._handle(entries):
                        break
                self._pending_done = True
            if time.monotonic() >= self._next_claim:
                self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000
                self._claim_abandoned()
            block = max(10, int(min(self.block_ms, (deadline - time.monotonic()) * 1000)))
            entries = self._read(">", block)
            if entries:
                self._handle(entries)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                # Redis lost the group (restarted without persistence): recreate it next round.
                logger.warning(
                    "consumer group %s missing on %s; recreating", keys.EVENTS_GROUP, keys.EVENTS_STREAM
                )
                self._group_ready = self._pending_done = False
                return
            raise

    def _claim_abandoned(self) -> None:
        reply = self.redis.xautoclaim(
            keys.EVENTS_STREAM, keys.EVENTS_GROUP, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=BATCH
        )
        entries = list(reply[1]) if reply and len(reply) > 1 else []
        entries = [e for e in entries if e and e[1] is not None]
        if entries:
            logger.info("duties %s took over %d abandoned events", self.consumer, len(entries))
            self._handle(entries)

    def _handle(self, entries: list[tuple[Any, dict[Any, Any]]]) -> bool:
        """Apply and ack entries; returns False if some must be retried later (database busy)."""
        done: list[Any] = []
        complete = True
        for entry_id, fields in entries:
            try:
                event = events.parse(fields)
            except (ValidationError, ValueError, TypeError) as exc:
                logger.error("malformed event %s dropped: %s", _text(entry_id), exc)
                done.append(entry_id)
                continue
            try:
                event_service.apply(event)
            except OperationalError as exc:
                # Database locked or unavailable: leave it pending, the next pending pass retries it.
                logger.warning(
                    "event %s for task %s not applied yet: %s", _text(entry_id), event["task_id"], exc
                )
                self._pending_done = False
                complete = False
                continue
            except Exception:
                logger.exception(
                    "event %s for task %s could not be applied; dropped", _text(entry_id), event["task_id"]
                )
            done.append(entry_id)
        if done:
            self.redis.xack(keys.EVENTS_STREAM, keys.EVENTS_GROUP, *done)
        return complete
