"""A consumer-group reader of every node's reports stream: parse, apply, ack; pending entries retried; dead
consumers' taken over; rung streams read at once, every stream swept now and then.

Each node appends to a stream of its own (keys.node_reports: Redis cannot let a user append to a shared
stream without letting it trim it), so there are as many streams as nodes. Reading 10,000 streams at every
turn would cost more than everything else the duties do, so an agent rings its node's channel after it
appends (keys.node_ring; the channel name says which node, and only that node may publish on it) and the
consumer reads the streams that rang. A ring is a pub/sub message: one sent while the duties were not
subscribed (a reconnect, a manager restart) is lost, so every stream is also swept every SWEEP_EVERY
seconds, and at every (re)start our pending entries are read again from the first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from marshmallow import ValidationError
from peewee import OperationalError
from redis import Redis
from redis.client import PubSub
from redis.exceptions import ResponseError

from shared import keys

logger = logging.getLogger(__name__)

BATCH = 500
"""Stream entries read per stream and XREADGROUP."""

STREAMS_PER_READ = 500
"""Streams named in one XREADGROUP (a sweep of 10,000 nodes is 20 of them)."""

CLAIM_IDLE_MS = 60_000
"""Entries another consumer left pending this long are taken over (that manager host died)."""

SWEEP_EVERY = 5.0
"""Seconds between two reads of every node's stream: what a lost ring delays a report by at most."""

Entry = tuple[Any, dict[Any, Any]]
Parse = Callable[[dict[Any, Any], str], tuple[str, dict[str, Any]]]
"""(entry fields, node id) -> (kind, message); raises ValidationError/ValueError/TypeError on a malformed one."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class StreamHandler:
    """What to do with the entries of one kind."""

    kind: str
    what: str  # "task event", "fleet task report": names entries in log lines
    apply: Callable[[list[dict[str, Any]]], Any]  # every item of the kind read at once; OperationalError: retried


class StreamConsumer:
    """Reads the reports streams of ``nodes()`` (and of any node that rings) as ``consumer`` of ``group``,
    and applies each entry, by the handler of its kind, once it parses."""

    def __init__(
        self,
        redis: Redis,
        group: str,
        consumer: str,
        parse: Parse,
        handlers: Sequence[StreamHandler],
        nodes: Callable[[], Iterable[str]],
        sweep_every: float = SWEEP_EVERY,
    ) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.parse = parse
        self.handlers = {h.kind: h for h in handlers}
        self.nodes = nodes
        self.sweep_every = sweep_every
        self._pubsub: PubSub | None = None
        self._grouped: set[str] = set()  # node ids whose stream has our group
        self._pending: set[str] | None = None  # node ids whose pending entries to read again; None: all
        self._next_sweep = 0.0
        self._next_claim = 0.0

    def reset(self) -> None:
        """Forget subscription, groups and pending passes (after a Redis outage): redo them on the next consume()."""
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - a connection already lost: nothing to close
                pass
            self._pubsub = None
        self._grouped.clear()
        self._pending = None
        self._next_sweep = 0.0

    def redo_pending(self) -> None:
        """Re-read our pending entries on the next consume() (another holder may have left some)."""
        self._pending = None

    def consume(self, block_ms: int) -> None:
        """Pending entries first, abandoned ones now and then, every stream now and then, then those that
        ring (waiting up to ``block_ms`` for one)."""
        if self._pubsub is None:
            # Subscribed before the sweep below: a report appended from now on is either rung or swept.
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.psubscribe(keys.NODE_RING_PATTERN)
            self._pubsub = pubsub
        now = time.monotonic()
        if self._pending is None or now >= self._next_sweep:
            every = set(self.nodes())
            # A node no longer known (forgotten: its stream deleted) is not swept, nor its stream made again;
            # one that rings without being known is read when it rings.
            self._grouped &= every
            if self._pending is None:
                self._pending = every
            self._next_sweep = now + self.sweep_every
            self._pending_pass()
            self._read_new(every)
        else:
            self._pending_pass()
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + CLAIM_IDLE_MS / 1000
            self._claim_abandoned()
        self._read_new(self._rung(block_ms))

    # -- reading ---------------------------------------------------------------------------------
    def _rung(self, block_ms: int) -> set[str]:
        """The nodes that rang within ``block_ms`` (the first ring ends the wait, the rest are taken at once)."""
        assert self._pubsub is not None
        rung: set[str] = set()
        timeout = block_ms / 1000
        while (message := self._pubsub.get_message(timeout=timeout)) is not None:
            node_id = keys.node_of_ring(_text(message.get("channel", "")))
            if node_id is not None:
                rung.add(node_id)
            timeout = 0.0
            if len(rung) >= STREAMS_PER_READ:
                break
        return rung

    def _ensure_groups(self, node_ids: Iterable[str]) -> None:
        missing = [node_id for node_id in node_ids if node_id not in self._grouped]
        if not missing:
            return
        pipe = self.redis.pipeline(transaction=False)
        for node_id in missing:
            pipe.xgroup_create(keys.node_reports(node_id), self.group, id="0", mkstream=True)
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._grouped.update(missing)

    def _read(self, node_ids: list[str], start: str) -> dict[str, list[Entry]]:
        """One XREADGROUP of the streams of ``node_ids`` from ``start`` ("0": our pending, ">": new), without
        blocking; node id -> entries. A stream that lost its group (deleted) gets it again."""
        self._ensure_groups(node_ids)
        streams = {keys.node_reports(node_id): start for node_id in node_ids}
        try:
            reply = self._xreadgroup(streams)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # A stream deleted meanwhile (a forgotten node) or Redis restarted empty: make the groups again.
            logger.warning("consumer group %s missing on some of %d streams; recreating", self.group, len(streams))
            self._grouped.difference_update(node_ids)
            self._ensure_groups(node_ids)
            reply = self._xreadgroup(streams)
        by_stream = {keys.node_reports(node_id): node_id for node_id in node_ids}
        return {by_stream[_text(stream)]: list(entries) for stream, entries in reply if entries}

    def _xreadgroup(self, streams: dict[str, str]) -> list[Any]:
        # redis-py types a sync reply as "Awaitable | Any": the cast says which one it is.
        reply = self.redis.xreadgroup(self.group, self.consumer, streams, count=BATCH)  # type: ignore[arg-type]
        return cast(list[Any] | None, reply) or []

    def _read_new(self, node_ids: Iterable[str]) -> None:
        ids = sorted(node_ids)
        for i in range(0, len(ids), STREAMS_PER_READ):
            todo = ids[i : i + STREAMS_PER_READ]
            while todo:
                read = self._read(todo, ">")
                assert self._pending is not None
                self._pending.update(self._handle(read))
                todo = [node_id for node_id, entries in read.items() if len(entries) >= BATCH]

    def _pending_pass(self) -> None:
        """Entries read before a crash or restart but never acked (ours), and those left by a busy database."""
        if not self._pending:
            return
        ids = sorted(self._pending)
        self._pending = set()
        for i in range(0, len(ids), STREAMS_PER_READ):
            todo = ids[i : i + STREAMS_PER_READ]
            while todo:
                read = self._read(todo, "0")
                incomplete = self._handle(read)
                self._pending.update(incomplete)
                todo = [n for n, entries in read.items() if len(entries) >= BATCH and n not in incomplete]

    def _claim_abandoned(self) -> None:
        ids = sorted(self._grouped)
        for i in range(0, len(ids), STREAMS_PER_READ):
            chunk = ids[i : i + STREAMS_PER_READ]
            pipe = self.redis.pipeline(transaction=False)
            for node_id in chunk:
                pipe.xautoclaim(
                    keys.node_reports(node_id), self.group, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=BATCH
                )
            claimed: dict[str, list[Entry]] = {}
            for node_id, reply in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, Exception):
                    self._grouped.discard(node_id)  # deleted meanwhile: the next read makes its group again
                    continue
                entries = [e for e in (list(reply[1]) if reply and len(reply) > 1 else []) if e and e[1] is not None]
                if entries:
                    claimed[node_id] = entries
            if claimed:
                count = sum(len(entries) for entries in claimed.values())
                logger.info(
                    "consumer %s took over %d abandoned reports of %d nodes", self.consumer, count, len(claimed)
                )
                assert self._pending is not None
                self._pending.update(self._handle(claimed))

    # -- applying --------------------------------------------------------------------------------
    def _handle(self, read: dict[str, list[Entry]]) -> set[str]:
        """Apply and ack the entries of several nodes' streams, each kind in one batch; returns the node ids
        whose entries must be retried later (database busy)."""
        if not read:
            return set()
        done: dict[str, list[Any]] = {node_id: [] for node_id in read}
        by_kind: dict[str, list[tuple[str, Any, dict[str, Any]]]] = {}
        for node_id, entries in read.items():
            for entry_id, fields in entries:
                try:
                    kind, item = self.parse(fields, node_id)
                    handler = self.handlers[kind]
                except (ValidationError, ValueError, TypeError, KeyError) as exc:
                    logger.error("malformed report %s of node %s dropped: %s", _text(entry_id), node_id, exc)
                    done[node_id].append(entry_id)
                    continue
                by_kind.setdefault(handler.kind, []).append((node_id, entry_id, item))
        incomplete: set[str] = set()
        for kind, parsed in by_kind.items():
            self._apply(self.handlers[kind], parsed, done, incomplete)
        pipe = self.redis.pipeline(transaction=False)
        for node_id, ids in done.items():
            if ids:
                pipe.xack(keys.node_reports(node_id), self.group, *ids)
        pipe.execute()
        return incomplete

    def _apply(
        self,
        handler: StreamHandler,
        parsed: list[tuple[str, Any, dict[str, Any]]],
        done: dict[str, list[Any]],
        incomplete: set[str],
    ) -> None:
        try:
            handler.apply([item for _, _, item in parsed])
        except OperationalError as exc:
            # Database locked or unavailable: leave the batch pending, the next pending pass retries it.
            logger.warning("%d %ss not applied yet: %s", len(parsed), handler.what, exc)
            incomplete.update(node_id for node_id, _, _ in parsed)
            return
        for node_id, entry_id, _ in parsed:
            done[node_id].append(entry_id)
