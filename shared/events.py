"""Task events and fleet task reports: agents append them to Redis streams; the manager's duties consume them."""

from __future__ import annotations

import json
from typing import Any

from marshmallow import Schema
from redis import Redis

from . import keys
from .defaults import EVENTS_MAXLEN, OUTPUT_STREAM_TTL, PROTOCOL_VERSION
from .messages import CommandReportSchema, ComponentReportSchema, TaskEventSchema


def _append(redis: Redis, stream: str, field: str, schema: Schema, message: dict[str, Any]) -> str:
    body = schema.dump(schema.load(message))
    entry_id = redis.xadd(
        stream,
        {"v": str(PROTOCOL_VERSION), field: json.dumps(body)},
        maxlen=EVENTS_MAXLEN,
        approximate=True,
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _load(fields: dict[Any, Any], field: str, schema: Schema) -> dict[str, Any]:
    raw = fields.get(field.encode(), fields.get(field))
    if isinstance(raw, bytes):
        raw = raw.decode()
    result: dict[str, Any] = schema.load(json.loads(raw or "null") or {})
    return result


def publish(redis: Redis, event: dict[str, Any]) -> str:
    """Validate and append a task event; returns its stream id."""
    return _append(redis, keys.EVENTS_STREAM, "event", TaskEventSchema(), event)


def parse(fields: dict[Any, Any]) -> dict[str, Any]:
    """Load one stream entry's fields into a validated event (raises marshmallow.ValidationError)."""
    return _load(fields, "event", TaskEventSchema())


def publish_command_report(redis: Redis, report: dict[str, Any]) -> str:
    """Validate and append a fleet task report of one node; returns its stream id."""
    return _append(redis, keys.COMMAND_REPORTS_STREAM, "report", CommandReportSchema(), report)


def parse_command_report(fields: dict[Any, Any]) -> dict[str, Any]:
    """Load one COMMAND_REPORTS_STREAM entry into a validated report (raises marshmallow.ValidationError)."""
    return _load(fields, "report", CommandReportSchema())


def publish_component_report(redis: Redis, report: dict[str, Any]) -> str:
    """Validate and append a business component report of one node; returns its stream id."""
    return _append(redis, keys.COMPONENT_REPORTS_STREAM, "report", ComponentReportSchema(), report)


def parse_component_report(fields: dict[Any, Any]) -> dict[str, Any]:
    """Load one COMPONENT_REPORTS_STREAM entry into a validated report (raises marshmallow.ValidationError)."""
    return _load(fields, "report", ComponentReportSchema())


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
