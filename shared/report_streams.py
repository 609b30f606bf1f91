"""Task events, fleet task reports, component reports and live output: agents append them to Redis streams
of their own node, signed with their node's key (shared.job_signing); the manager checks the signature and
consumes them.

Every node has one reports stream (keys.node_reports) carrying all three kinds of report, told apart by the
entry's ``kind`` field: one stream (and one consumer group) per node rather than three keeps the manager's
reads, group creations and pending passes to one per node, and a node's reports in the order it made them.
After appending, the agent rings its node's channel (keys.node_ring) so the duties read it at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from marshmallow import Schema
from redis import Redis
from redis.client import Pipeline

from . import job_signing, keys
from .defaults import APP_LOG_STREAM_MAXLEN, EVENTS_MAXLEN, OUTPUT_STREAM_TTL, PROTOCOL_VERSION
from .messages import (
    CommandReportSchema,
    ComponentReportSchema,
    InstanceReportSchema,
    TaskEventSchema,
    schema_of,
)
from .messages.fast_load import FastLoad, fast_loader

KeyOf = Callable[[str], bytes]
"""The signing key of a node id (the manager derives it: manager_api.services.job_keys.node_key)."""

SIG_FIELD = "sig"
"""The stream entry field holding the sender node's signature of the message (shared.job_signing)."""

EVENT = "event"
"""Kind of a task event (TaskEventSchema)."""
COMMAND = "command"
"""Kind of a fleet task report (CommandReportSchema)."""
COMPONENT = "component"
"""Kind of a business component report (ComponentReportSchema)."""
INSTANCE = "instance"
"""Kind of an app instance report (InstanceReportSchema)."""

SCHEMAS: dict[str, type[Schema]] = {
    EVENT: TaskEventSchema,
    COMMAND: CommandReportSchema,
    COMPONENT: ComponentReportSchema,
    INSTANCE: InstanceReportSchema,
}
"""The schema of each kind of report."""


class UnsignedMessage(ValueError):
    """A report or event not signed with the key of the node it speaks for: forged, or from an unjoined agent."""


def _context(stream: str, kind: str) -> str:
    # What a signature covers besides the text: the stream (so the node) and the kind it is read as.
    return f"{stream}\0{kind}"


def _schema(kind: str) -> Schema:
    return schema_of(SCHEMAS[kind])


_FAST: dict[str, FastLoad | None] = {kind: fast_loader(schema_of(schema)) for kind, schema in SCHEMAS.items()}
"""Each kind's fast load (shared.messages.fast_load), None where its schema is not plain enough for one."""


def _load(kind: str, message: Any) -> dict[str, Any]:
    """``message`` loaded as the schema of ``kind`` loads it: the fast path when it decides, else the schema
    (which raises marshmallow.ValidationError on anything malformed)."""
    fast = _FAST[kind]
    loaded = fast(message) if fast is not None else None
    return loaded if loaded is not None else _schema(kind).load(message)


def _append(redis: Redis, kind: str, message: dict[str, Any], key: bytes | None) -> str | None:
    """Validate and append one report to its node's stream, then ring; returns its stream id, None when
    ``redis`` is a pipeline (the caller executes it)."""
    fast = _FAST[kind]
    # What the fast path loads is already what dumping it gives (plain strings, numbers, booleans, in order).
    body = fast(message) if fast is not None else None
    if body is None:
        schema = _schema(kind)
        body = schema.dump(schema.load(message))
    text = json.dumps(body)
    stream = keys.node_reports(body["node_id"])
    entry = {"v": str(PROTOCOL_VERSION), "kind": kind, "body": text}
    if key is not None:
        entry[SIG_FIELD] = job_signing.sign_message(key, _context(stream, kind), text)
    pipe = redis if isinstance(redis, Pipeline) else redis.pipeline(transaction=False)
    # Trimming is safe: the stream is this node's alone (a node can drop only its own reports).
    pipe.xadd(stream, entry, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]
    pipe.publish(keys.node_ring(body["node_id"]), "1")
    if pipe is redis:
        return None
    entry_id = pipe.execute()[0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def _text(fields: dict[Any, Any], field: str) -> str:
    raw = fields.get(field.encode(), fields.get(field))
    return raw.decode() if isinstance(raw, bytes) else str(raw or "")


def publish(redis: Redis, event: dict[str, Any], key: bytes | None = None) -> str | None:
    """Validate and append a task event, signed with the sender node's ``key``; returns its stream id."""
    return _append(redis, EVENT, event, key)


def publish_command_report(redis: Redis, report: dict[str, Any], key: bytes | None = None) -> str | None:
    """Validate and append a fleet task report of one node, signed with its ``key``; returns its stream id."""
    return _append(redis, COMMAND, report, key)


def publish_component_report(redis: Redis, report: dict[str, Any], key: bytes | None = None) -> str | None:
    """Validate and append a business component report of one node, signed with its ``key``; returns its id."""
    return _append(redis, COMPONENT, report, key)


def publish_instance_report(redis: Redis, report: dict[str, Any], key: bytes | None = None) -> str | None:
    """Validate and append an app instance report of one node, signed with its ``key``; returns its stream id."""
    return _append(redis, INSTANCE, report, key)


def parse_report(fields: dict[Any, Any], node_id: str, key_of: KeyOf | None = None) -> tuple[str, dict[str, Any]]:
    """The kind and validated message of one entry of ``node_id``'s reports stream (raises ValueError, and
    marshmallow.ValidationError, on anything malformed); with ``key_of``, also check that the node signed it
    (raises UnsignedMessage)."""
    kind = _text(fields, "kind")
    if kind not in SCHEMAS:
        raise ValueError(f"unknown kind of report {kind!r}")
    text = _text(fields, "body")
    result = _load(kind, json.loads(text or "null") or {})
    if result["node_id"] != node_id:
        raise UnsignedMessage(f"speaks for node {result['node_id']} in the stream of node {node_id}: refused")
    stream = keys.node_reports(node_id)
    if key_of is not None and not job_signing.verify_message(
        key_of(node_id), _text(fields, SIG_FIELD) or None, _context(stream, kind), text
    ):
        raise UnsignedMessage(f"not signed with the key of node {node_id}: refused")
    return kind, result


def _output_text(stream: str, line: str) -> str:
    return f"{stream}\0{line}"


def append_output(
    redis: Redis, task_id: str, node_id: str, stream: str, lines: list[str], key: bytes | None = None
) -> None:
    """Append output lines of one node to its live output stream of the task (one round trip, or queued on
    ``redis`` when it is a pipeline: the caller executes it) and renew its TTL; each line signed with the node's
    ``key``."""
    if not lines:
        return
    output = keys.task_output(task_id, node_id)
    pipe = redis if isinstance(redis, Pipeline) else redis.pipeline(transaction=False)
    for line in lines:
        entry = {"node_id": node_id, "stream": stream, "line": line}
        if key is not None:
            entry[SIG_FIELD] = job_signing.sign_message(key, output, _output_text(stream, line))
        pipe.xadd(output, entry)  # type: ignore[arg-type]
    pipe.expire(output, OUTPUT_STREAM_TTL)
    if pipe is not redis:
        pipe.execute()


def output_line_signed(task_id: str, node_id: str, values: dict[str, str], key_of: KeyOf) -> bool:
    """Whether an entry (its fields as text) of ``node_id``'s output stream of the task was signed by that node."""
    text = _output_text(values.get("stream", ""), values.get("line", ""))
    return values.get("node_id") == node_id and job_signing.verify_message(
        key_of(node_id), values.get(SIG_FIELD), keys.task_output(task_id, node_id), text
    )


def append_instance_log(
    redis: Redis, node_id: str, instance_id: str, stream: str, lines: list[str], key: bytes | None = None
) -> None:
    """Append an app instance's output lines (``stream`` stdout or stderr) to its log stream on its node (one
    round trip; the newest APP_LOG_STREAM_MAXLEN kept), each line signed with the node's ``key``."""
    if not lines:
        return
    log = keys.instance_log(node_id, instance_id)
    pipe = redis.pipeline(transaction=False)
    for line in lines:
        entry = {"stream": stream, "line": line}
        if key is not None:
            entry[SIG_FIELD] = job_signing.sign_message(key, log, _output_text(stream, line))
        pipe.xadd(log, entry, maxlen=APP_LOG_STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    pipe.execute()


def instance_log_line_signed(node_id: str, instance_id: str, values: dict[str, str], key_of: KeyOf) -> bool:
    """Whether an entry (its fields as text) of an instance's log stream was signed by the node it runs on."""
    text = _output_text(values.get("stream", ""), values.get("line", ""))
    return job_signing.verify_message(
        key_of(node_id), values.get(SIG_FIELD), keys.instance_log(node_id, instance_id), text
    )
