"""A consumer-group reader of Redis streams: parse, apply, ack; pending entries retried; dead consumers' taken over.

Generic over (stream, parse, apply): the duties use it for the task events and the fleet task reports,
reading every stream in one blocking XREADGROUP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from marshmallow import ValidationError
from peewee import OperationalError
from redis import Redis
from redis.exceptions import ResponseError

logger = logging.getLogger(__name__)

BATCH = 500
"""Stream entries read per XREADGROUP."""

CLAIM_IDLE_MS = 60_000
"""Entries another consumer left pending this long are taken over (that manager host died)."""

Entry = tuple[Any, dict[Any, Any]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class StreamHandler:
    """One stream and what to do with its entries."""

    stream: str
    what: str  # "event", "report": names entries in log lines
    parse: Callable[[dict[Any, Any]], dict[str, Any]]  # raises ValidationError/ValueError/TypeError
    apply: Callable[[dict[str, Any]], Any] | None = None  # one item; OperationalError (database busy): retried
    apply_batch: Callable[[list[dict[str, Any]]], Any] | None = None  # all items read at once, same contract


class StreamConsumer:
    """Reads ``handlers``' streams as ``consumer`` of ``group`` and applies each entry once it parses."""

    def __init__(self, redis: Redis, group: str, consumer: str, handlers: Sequence[StreamHandler]) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.handlers = {h.stream: h for h in handlers}
        self._group_ready = False
        self._pending_done: set[str] = set()
        self._next_claim = 0.0

    def reset(self) -> None:
        """Forget groups and pending passes (after a Redis outage): redo both on the next consume()."""
        self._group_ready = False
        self._pending_done.clear()

    def redo_pending(self) -> None:
        """Re-read our pending entries on the next consume() (another holder may have left some)."""
        self._pending_done.clear()

    def consume(self, block_ms: int) -> None:
        """Pending entries first, abandoned ones now and then, then new ones (waiting up to ``block_ms``)."""
        try:
            if not self._group_ready:
                self._ensure_groups()
            for stream, handler in self.handlers.items():
                if stream in self._pending_done:
                    continue
                # Entries read before a crash or restart but never acked: ours first.
                complete = True
                while complete and (entries := self._read({stream: "0"}, None).get(stream)):
                    complete = self._handle(handler, entries)
                if complete:
                    self._pending_done.add(stream)
            if time.monotonic() >= self._next_claim:
                self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000
                self._claim_abandoned()
            replies = self._read({stream: ">" for stream in self.handlers}, block_ms)
            for stream, entries in replies.items():
                if not self._handle(self.handlers[stream], entries):
                    self._pending_done.discard(stream)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                # Redis lost the group (restarted without persistence): recreate it next round.
                logger.warning("consumer group %s missing on %s; recreating", self.group, ",".join(self.handlers))
                self.reset()
                return
            raise

    def _ensure_groups(self) -> None:
        for stream in self.handlers:
            try:
                self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
                logger.info("consumer group %s created on %s", self.group, stream)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._group_ready = True

    def _read(self, streams: dict[str, str], block_ms: int | None) -> dict[str, list[Entry]]:
        # redis-py types a sync reply as "Awaitable | Any": the casts say which one it is.
        reply = cast(
            list[Any] | None,
            self.redis.xreadgroup(self.group, self.consumer, streams, count=BATCH, block=block_ms),  # type: ignore[arg-type]
        )
        return {_text(stream): list(entries) for stream, entries in (reply or []) if entries}

    def _claim_abandoned(self) -> None:
        for stream, handler in self.handlers.items():
            reply = cast(
                list[Any],
                self.redis.xautoclaim(stream, self.group, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=BATCH),
            )
            entries = list(reply[1]) if reply and len(reply) > 1 else []
            entries = [e for e in entries if e and e[1] is not None]
            if entries:
                logger.info("consumer %s took over %d abandoned %ss", self.consumer, len(entries), handler.what)
                self._handle(handler, entries)

    def _handle(self, handler: StreamHandler, entries: list[Entry]) -> bool:
        """Apply and ack entries; returns False if some must be retried later (database busy)."""
        done: list[Any] = []
        parsed: list[tuple[Any, dict[str, Any]]] = []
        for entry_id, fields in entries:
            try:
                parsed.append((entry_id, handler.parse(fields)))
            except (ValidationError, ValueError, TypeError) as exc:
                logger.error("malformed %s %s dropped: %s", handler.what, _text(entry_id), exc)
                done.append(entry_id)
        complete = (
            self._apply_batch(handler, parsed, done) if handler.apply_batch else self._apply_each(handler, parsed, done)
        )
        if done:
            self.redis.xack(handler.stream, self.group, *done)
        return complete

    def _apply_batch(self, handler: StreamHandler, parsed: list[tuple[Any, dict[str, Any]]], done: list[Any]) -> bool:
        assert handler.apply_batch is not None
        if not parsed:
            return True
        try:
            handler.apply_batch([item for _, item in parsed])
        except OperationalError as exc:
            # Database locked or unavailable: leave the batch pending, the next pending pass retries it.
            logger.warning("%d %ss not applied yet: %s", len(parsed), handler.what, exc)
            return False
        done.extend(entry_id for entry_id, _ in parsed)
        return True

    def _apply_each(self, handler: StreamHandler, parsed: list[tuple[Any, dict[str, Any]]], done: list[Any]) -> bool:
        assert handler.apply is not None
        complete = True
        for entry_id, item in parsed:
            try:
                handler.apply(item)
            except OperationalError as exc:
                # Database locked or unavailable: leave it pending, the next pending pass retries it.
                logger.warning(
                    "%s %s for task %s not applied yet: %s", handler.what, _text(entry_id), item.get("task_id"), exc
                )
                complete = False
                continue
            except Exception:
                logger.exception(
                    "%s %s for task %s could not be applied; dropped",
                    handler.what,
                    _text(entry_id),
                    item.get("task_id"),
                )
            done.append(entry_id)
        return complete
