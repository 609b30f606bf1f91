"""Task events: agents append them to one Redis stream; the manager's duties consume it."""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from . import keys
from .defaults import EVENTS_MAXLEN, PROTOCOL_VERSION
from .messages import TaskEventSchema


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
