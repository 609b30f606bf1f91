"""Task events and fleet task reports: agents append them to Redis streams, signed with their node's key
(shared.job_signing); the manager's duties check the signature and consume them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from marshmallow import Schema
from redis import Redis

from . import job_signing, keys
from .defaults import EVENTS_MAXLEN, OUTPUT_STREAM_TTL, PROTOCOL_VERSION
from .messages import CommandReportSchema, ComponentReportSchema, TaskEventSchema

KeyOf = Callable[[str], bytes]
"""The signing key of a node id (the manager derives it: manager_api.services.job_keys.node_key)."""

SIG_FIELD = "sig"
"""The stream entry field holding the sender node's signature of the message (shared.job_signing)."""


class UnsignedMessage(ValueError):
    """A report or event not signed with the key of the node it speaks for: forged, or from an unjoined agent."""


def _append(redis: Redis, stream: str, field: str, schema: Schema, message: dict[str, Any], key: bytes | None) -> str:
    body = schema.dump(schema.load(message))
    text = json.dumps(body)
    entry = {"v": str(PROTOCOL_VERSION), field: text}
    if key is not None:
        entry[SIG_FIELD] = job_signing.sign_message(key, stream, text)
    entry_id = redis.xadd(stream, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _text(fields: dict[Any, Any], field: str) -> str:
    raw = fields.get(field.encode(), fields.get(field))
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")


def _load(fields: dict[Any, Any], stream: str, field: str, schema: Schema, key_of: KeyOf | None) -> dict[str, Any]:
    text = _text(fields, field)
    result: dict[str, Any] = schema.load(json.loads(text or "null") or {})
    if key_of is not None and not job_signing.verify_message(
        key_of(result["node_id"]), _text(fields, SIG_FIELD) or None, stream, text
    ):
        raise UnsignedMessage(f"not signed with the key of node {result['node_id']}: refused")
    return result


def publish(redis: Redis, event: dict[str, Any], key: bytes | None = None) -> str:
    """Validate and append a task event, signed with the sender node's ``key``; returns its stream id."""
    return _append(redis, keys.EVENTS_STREAM, "event", TaskEventSchema(), event, key)


def parse(fields: dict[Any, Any], key_of: KeyOf | None = None) -> dict[str, Any]:
    """Load one stream entry's fields into a validated event (raises marshmallow.ValidationError); with
    ``key_of``, also check that its node signed it (raises UnsignedMessage)."""
    return _load(fields, keys.EVENTS_STREAM, "event", TaskEventSchema(), key_of)


def publish_command_report(redis: Redis, report: dict[str, Any], key: bytes | None = None) -> str:
    """Validate and append a fleet task report of one node, signed with its ``key``; returns its stream id."""
    return _append(redis, keys.COMMAND_REPORTS_STREAM, "report", CommandReportSchema(), report, key)


def parse_command_report(fields: dict[Any, Any], key_of: KeyOf | None = None) -> dict[str, Any]:
    """Load one COMMAND_REPORTS_STREAM entry into a validated report (raises marshmallow.ValidationError);
    with ``key_of``, also check that its node signed it (raises UnsignedMessage)."""
    return _load(fields, keys.COMMAND_REPORTS_STREAM, "report", CommandReportSchema(), key_of)


def publish_component_report(redis: Redis, report: dict[str, Any], key: bytes | None = None) -> str:
    """Validate and append a business component report of one node, signed with its ``key``; returns its id."""
    return _append(redis, keys.COMPONENT_REPORTS_STREAM, "report", ComponentReportSchema(), report, key)


def parse_component_report(fields: dict[Any, Any], key_of: KeyOf | None = None) -> dict[str, Any]:
    """Load one COMPONENT_REPORTS_STREAM entry into a validated report (raises marshmallow.ValidationError);
    with ``key_of``, also check that its node signed it (raises UnsignedMessage)."""
    return _load(fields, keys.COMPONENT_REPORTS_STREAM, "report", ComponentReportSchema(), key_of)


def _output_text(node_id: str, stream: str, line: str) -> str:
    return f"{node_id}\0{stream}\0{line}"


def append_output(
    redis: Redis, task_id: str, node_id: str, stream: str, lines: list[str], key: bytes | None = None
) -> None:
    """Append output lines of one node to the task's live output stream (one round trip) and renew its TTL;
    each line signed with the node's ``key``."""
    if not lines:
        return
    output = keys.task_output(task_id)
    pipe = redis.pipeline(transaction=False)
    for line in lines:
        entry = {"node_id": node_id, "stream": stream, "line": line}
        if key is not None:
            entry[SIG_FIELD] = job_signing.sign_message(key, output, _output_text(node_id, stream, line))
        pipe.xadd(output, entry)  # type: ignore[arg-type]
    pipe.expire(output, OUTPUT_STREAM_TTL)
    pipe.execute()


def output_line_signed(task_id: str, values: dict[str, str], key_of: KeyOf) -> bool:
    """Whether an output stream entry (its fields as text) was signed by the node it names."""
    node_id, stream, line = values.get("node_id", ""), values.get("stream", ""), values.get("line", "")
    text = _output_text(node_id, stream, line)
    return job_signing.verify_message(key_of(node_id), values.get(SIG_FIELD), keys.task_output(task_id), text)
