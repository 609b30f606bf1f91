"""Live output of a fleet task as Server-Sent Events: the stored lines from the first, then new ones."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, cast

from redis import Redis

from shared import events, keys

from ..models import FleetTask, TaskHost
from . import fleet_tasks, job_keys

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
    key = keys.task_output(task_id)
    hostnames = _Hostnames(task_id)
    last = after or "0-0"
    next_status = 0.0
    last_sent = time.monotonic()
    over = False
    status: str | None = None
    sent = 0
    logger.debug("output of fleet task %s followed (node %s, after %s)", task_id, node or "any", last)

    def render(entries: list[tuple[Any, dict[Any, Any]]]) -> Iterator[str]:
        nonlocal last, sent
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            if entry_id == last:
                continue
            last = entry_id
            values = {_text(k): _text(v) for k, v in fields.items()}
            node_id = values.get("node_id", "")
            if node and node_id != node:
                continue
            if not events.output_line_signed(task_id, values, job_keys.node_key):
                logger.warning(
                    "fleet task %s: output line %s not signed by node %s: not shown", task_id, entry_id, node_id
                )
                continue
            sent += 1
            data = {
                "node_id": node_id,
                "hostname": hostnames[node_id],
                "stream": values.get("stream", ""),
                "line": values.get("line", ""),
            }
            yield sse("line", data, entry_id)

    while True:
        # The stored lines first, in batches: a late client gets everything from the first line.
        backlog = cast(list[Any], redis.xrange(key, min="-" if last == "0-0" else last, count=BATCH + 1))
        fresh = [e for e in backlog if _text(e[0]) != last]
        if fresh:
            chunk = "".join(render(fresh))
            if chunk:
                last_sent = time.monotonic()
                yield chunk
            continue
        if over:
            logger.debug("output of fleet task %s ended (%s, %d lines sent)", task_id, status, sent)
            yield sse("end", {"task_id": task_id, "status": status})
            return
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + STATUS_EVERY
            found = fleet_tasks.status_of(task_id)
            status, over = (None, True) if found is None else found
            if over:
                # Agents append lines before their final report: one more read drains what is left.
                continue
        reply = cast(list[Any], redis.xread({key: last}, count=BATCH, block=block_ms))
        if reply:
            chunk = "".join(render(list(reply[0][1])))
            if chunk:
                last_sent = time.monotonic()
                yield chunk
        elif time.monotonic() - last_sent >= keepalive_every:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
