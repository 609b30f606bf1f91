"""Task events: agents append them to one Redis stream; the manager's duties consume it."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from . import keys
from .defaults import EVENTS_MAXLEN, OUTPUT_STREAM_TTL, PROTOCOL_VERSION
from .messages import CommandReportSchema, TaskEventSchema


def publish(redis: Redis, event: dict[str, Any]) -> str:
    """Validate and append a task event; returns its stream id."""
    body = TaskEventSchema().dump(TaskEventSchema().load(event))
    entry_id = redis.xadd(
        keys.EVENTS_STREAM,
        {"v": str(PROTOCOL_VERSION), "event": json.dumps(body)},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse(fields: dict[Any, Any]) -> dict[str, Any]:
    """Load one stream entry's fields into a validated event (raises marshmallow.ValidationError)."""
    raw = fields.get(b"event", fields.get("event"))
    if isinstance(raw, bytes):
        raw = raw.decode()
    result: dict[str, Any] = TaskEventSchema().load(json.loads(raw or "null") or {})
    return result


def publish_command_report(redis: Redis, report: dict[str, Any]) -> str:
    """Validate and append a fleet task report of one node; returns its stream id."""
    body = CommandReportSchema().dump(CommandReportSchema().load(report))
    entry_id = redis.xadd(
        keys.COMMAND_REPORTS_STREAM,
        {"v": str(PROTOCOL_VERSION), "report": json.dumps(body)},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_command_report(fields: dict[Any, Any]) -> dict[str, Any]:
    """Load one COMMAND_REPORTS_STREAM entry into a validated report (raises marshmallow.ValidationError)."""
    raw = fields.get(b"report", fields.get("report"))
    if isinstance(raw, bytes):
        raw = raw.decode()
    result: dict[str, Any] = CommandReportSchema().load(json.loads(raw or "null") or {})
    return result


def append_output(redis: Redis, task_id: str, node_id: str, stream: str, lines: list[str]) -> None:
    """Append output lines of one node to the task's live output stream (one round trip) and renew its TTL."""
    if not lines:
        return
    key = keys.task_output(task_id)
    pipe = redis.pipeline(transaction=False)
    for line in lines:
        pipe.xadd(key, {"node_id": node_id, "stream": stream, "line": line})
    pipe.expire(key, OUTPUT_STREAM_TTL)
    pipe.execute()
