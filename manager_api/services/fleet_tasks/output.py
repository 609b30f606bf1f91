"""Live output of a fleet task as Server-Sent Events: the stored lines from the first, then new ones."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

from redis import Redis

from manager_api.models import FleetTask, TaskHost
from manager_api.services import job_keys
from manager_api.services.fleet_tasks import reads as fleet_task_reads
from manager_api.stopping import STOPPING
from shared import keys, report_streams

logger = logging.getLogger(__name__)

BATCH = 1000
"""Stream entries read per XRANGE / XREAD."""
BLOCK_MS = 1000
"""How long one XREAD waits for new lines; the task's status is looked at between two reads."""
STATUS_EVERY = 1.0
"""Seconds between two looks at the task's status in the database."""
KEEPALIVE_EVERY = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sse(event: str, data: dict[str, Any], entry_id: str | None = None) -> str:
    """One Server-Sent Event."""
    head = f"id: {entry_id}\n" if entry_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class _Hostnames:
    """Hostname of each node of the task, read once and again only for a node not seen yet."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.names: dict[str, str] = {}
        self._load()

    def reload(self) -> None:
        """Read the task's hosts again (a node may be added to it later)."""
        self._load()

    def _load(self) -> None:
        rows = (
            TaskHost.select(TaskHost.node, TaskHost.hostname)
            .join(FleetTask)
            .where(FleetTask.task_id == self.task_id, TaskHost.node.is_null(False))
            .tuples()
        )
        self.names.update({node_id: hostname for node_id, hostname in rows})

    def __getitem__(self, node_id: str) -> str:
        if node_id not in self.names:
            self._load()
            self.names.setdefault(node_id, "")
        return self.names[node_id]


class _NodeStreams:
    """The output streams of a task's nodes (keys.task_output), read together and merged in stream id order."""

    def __init__(self, redis: Redis, task_id: str, start: str) -> None:
        self.redis = redis
        self.task_id = task_id
        self.start = start
        self.cursors: dict[str, str] = {}  # stream -> id of its last line taken
        self.node_of: dict[str, str] = {}

    def add(self, node_ids: list[str]) -> None:
        """Follow these nodes' streams too, from ``start`` (every node's lines after a Last-Event-ID)."""
        for node_id in node_ids:
            stream = keys.task_output(self.task_id, node_id)
            if stream not in self.cursors:
                self.cursors[stream], self.node_of[stream] = self.start, node_id

    def read(self, block: int | None) -> list[tuple[str, str, dict[Any, Any]]]:
        """The next lines as (entry id, node id, fields), oldest first; waits up to ``block`` ms for one."""
        if not self.cursors:
            return []
        reply = cast(list[Any], self.redis.xread(self.cursors, count=BATCH, block=block))  # type: ignore[arg-type]
        lines = []
        horizon: tuple[int, int] | None = None  # a stream that filled its batch may hold more before the others
        for raw_stream, entries in reply or []:
            stream = _text(raw_stream)
            lines += [(_text(raw_id), stream, fields) for raw_id, fields in entries]
            if len(entries) >= BATCH:
                last = _stream_id(_text(entries[-1][0]))
                horizon = last if horizon is None else min(horizon, last)
        # What lies past the horizon is read again, after what the full stream holds before it.
        taken = sorted((line for line in lines if horizon is None or _stream_id(line[0]) <= horizon), key=_order)
        for entry_id, stream, _fields in taken:
            self.cursors[stream] = entry_id
        return [(entry_id, self.node_of[stream], fields) for entry_id, stream, fields in taken]


class _Follow:
    """One client's follow of a task's output: its streams, the lines sent, and the task's status last seen."""

    def __init__(self, redis: Redis, task_id: str, node: str | None, after: str | None) -> None:
        self.task_id = task_id
        self.node = node
        self.hostnames = _Hostnames(task_id)
        self.streams = _NodeStreams(redis, task_id, after or "0-0")
        self.streams.add([node] if node else list(self.hostnames.names))
        self.next_status = 0.0
        self.last_sent = time.monotonic()
        self.over = False
        self.status: str | None = None
        self.sent = 0

    def render(self, lines: list[tuple[str, str, dict[Any, Any]]]) -> str:
        """The SSE text of ``lines``, but those their node did not sign."""
        chunks = []
        for entry_id, node_id, fields in lines:
            values = {_text(k): _text(v) for k, v in fields.items()}
            if not report_streams.output_line_signed(self.task_id, node_id, values, job_keys.node_key):
                logger.warning(
                    "fleet task %s: output line %s not signed by node %s: not shown", self.task_id, entry_id, node_id
                )
                continue
            self.sent += 1
            data = {
                "node_id": node_id,
                "hostname": self.hostnames[node_id],
                "stream": values.get("stream", ""),
                "line": values.get("line", ""),
            }
            chunks.append(sse("line", data, entry_id))
        if chunks:
            self.last_sent = time.monotonic()
        return "".join(chunks)

    def look_at_status(self) -> None:
        """Read the task's status, and follow the nodes added to it meanwhile."""
        self.next_status = time.monotonic() + STATUS_EVERY
        found = fleet_task_reads.status_of(self.task_id)
        self.status, self.over = (None, True) if found is None else found
        if not self.node:
            self.hostnames.reload()
            self.streams.add(list(self.hostnames.names))


def follow(
    redis: Redis,
    task_id: str,
    node: str | None = None,
    after: str | None = None,
    block_ms: int = BLOCK_MS,
    keepalive_every: float = KEEPALIVE_EVERY,
) -> Iterator[str]:
    """Yield the task's output as SSE text until the task is over and every line was sent.

    Lines come from the first (or after stream id ``after``, a reconnecting client's Last-Event-ID).
    """
    state = _Follow(redis, task_id, node, after)
    streams = state.streams
    logger.debug("output of fleet task %s followed (node %s, after %s)", task_id, node or "any", streams.start)
    while True:
        # The stored lines first, in batches: a late client gets everything from the first line.
        if lines := streams.read(None):
            if chunk := state.render(lines):
                yield chunk
            continue
        if state.over:
            logger.debug("output of fleet task %s ended (%s, %d lines sent)", task_id, state.status, state.sent)
            yield sse("end", {"task_id": task_id, "status": state.status})
            return
        if STOPPING.is_set():
            return  # this manager stops: the client reconnects with Last-Event-ID and loses nothing
        if time.monotonic() >= state.next_status:
            state.look_at_status()
            if state.over:
                # Agents append lines before their final report: one more read drains what is left.
                continue
        if not streams.cursors:
            time.sleep(block_ms / 1000)  # no node to wait on yet
        elif lines := streams.read(block_ms):
            if chunk := state.render(lines):
                yield chunk
        elif time.monotonic() - state.last_sent >= keepalive_every:
            state.last_sent = time.monotonic()
            yield ": keepalive\n\n"


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _order(line: tuple[str, str, Any]) -> tuple[tuple[int, int], str]:
    return _stream_id(line[0]), line[1]
