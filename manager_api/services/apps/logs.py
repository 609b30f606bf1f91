"""An app instance's output: the last lines of its log stream (keys.instance_log), and live as Server-Sent Events.

Only lines signed by the node the instance runs on are shown (shared.report_streams.instance_log_line_signed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, cast

from redis import Redis

from manager_api.models import AppInstance
from manager_api.services import job_keys
from manager_api.services.fleet_tasks.output import sse
from manager_api.stopping import STOPPING
from shared import keys, report_streams
from shared.defaults import APP_LOG_STREAM_MAXLEN

logger = logging.getLogger(__name__)

BATCH = 1000
"""Entries read per XREVRANGE / XREAD."""
BLOCK_MS = 1000
"""How long one XREAD waits for new lines; whether the instance still exists is looked at between two."""
KEEPALIVE_EVERY = 15.0
"""Seconds of silence after which a comment line keeps proxies from closing the stream."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _line(
    node_id: str, instance_id: str, entry_id: Any, fields: dict[Any, Any], stream: str | None
) -> dict[str, str] | None:
    """An entry as {id, stream, line}, or None when it is of the other stream or not signed by its node."""
    values = {_text(k): _text(v) for k, v in fields.items()}
    if stream is not None and values.get("stream") != stream:
        return None
    if not report_streams.instance_log_line_signed(node_id, instance_id, values, job_keys.node_key):
        logger.warning(
            "instance %s: log line %s not signed by node %s: not shown", instance_id, _text(entry_id), node_id
        )
        return None
    return {"id": _text(entry_id), "stream": values.get("stream", ""), "line": values.get("line", "")}


def tail(redis: Redis, row: AppInstance, stream: str | None, count: int) -> list[dict[str, str]]:
    """The last ``count`` lines (of ``stream`` only, when given), oldest first."""
    if row.node_id is None or count <= 0:
        return []
    log = keys.instance_log(row.node_id, row.id)
    found: list[dict[str, str]] = []
    end = "+"
    scanned = 0
    while len(found) < count and scanned <= APP_LOG_STREAM_MAXLEN * 2:
        entries = cast(list[Any], redis.xrevrange(log, max=end, min="-", count=BATCH))
        if not entries:
            break
        for entry_id, fields in entries:
            line = _line(row.node_id, row.id, entry_id, fields, stream)
            if line is not None:
                found.append(line)
                if len(found) >= count:
                    break
        scanned += len(entries)
        last = _text(entries[-1][0])
        if len(entries) < BATCH:
            break
        end = f"({last}"
    found.reverse()
    return found


def follow(redis: Redis, row: AppInstance, stream: str | None, count: int, block_ms: int = BLOCK_MS) -> Iterator[str]:
    """The last ``count`` lines, then every new one as it comes, as SSE ``line`` events; ``end`` once the
    instance is gone (stopped and forgotten)."""
    instance_id = row.id
    lines = tail(redis, row, stream, count)
    for line in lines:
        yield sse("line", line, line["id"])
    cursor = start_cursor(redis, row, lines)
    last_sent = time.monotonic()
    while True:
        found_lines, cursor = newer(redis, row, stream, cursor, block_ms)
        chunks = [sse("line", found, found["id"]) for found in found_lines]
        if chunks:
            last_sent = time.monotonic()
            yield "".join(chunks)
            continue
        if AppInstance.get_or_none(AppInstance.id == instance_id) is None:
            yield sse("end", {"instance_id": instance_id})
            return
        if STOPPING.is_set():
            return  # this manager stops: the client reconnects with Last-Event-ID and loses nothing
        if time.monotonic() - last_sent >= KEEPALIVE_EVERY:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"


def start_cursor(redis: Redis, row: AppInstance, lines: list[dict[str, str]]) -> str:
    """Where to read new lines from after ``lines`` (a tail just read): after its last line, or after the
    stream's newest entry when the tail was empty."""
    return lines[-1]["id"] if lines else _last_id(redis, keys.instance_log(row.node_id or "", row.id))


def newer(
    redis: Redis, row: AppInstance, stream: str | None, cursor: str, block_ms: int = BLOCK_MS
) -> tuple[list[dict[str, str]], str]:
    """The lines after entry ``cursor`` (of ``stream`` only, when given; waiting up to ``block_ms`` for one),
    oldest first, and the cursor to read on from (past lines skipped as unsigned or of the other stream too)."""
    node_id = row.node_id or ""
    reply = cast(list[Any], redis.xread({keys.instance_log(node_id, row.id): cursor}, count=BATCH, block=block_ms))
    found: list[dict[str, str]] = []
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            cursor = _text(entry_id)
            line = _line(node_id, row.id, entry_id, fields, stream)
            if line is not None:
                found.append(line)
    return found, cursor


def _last_id(redis: Redis, log: str) -> str:
    """The id of the stream's newest entry ("0-0" when empty): new lines are those after it."""
    entries = cast(list[Any], redis.xrevrange(log, count=1))
    return _text(entries[0][0]) if entries else "0-0"
