"""The fast load of plain messages (shared.messages.fast_load) answers what the schema's load answers, or
leaves the message to the schema: equal results on valid messages, the schema's own errors on the others."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields, validate

from shared import report_streams
from shared.messages import CommandReportSchema, TaskEventSchema, schema_of
from shared.messages.base import Text
from shared.messages.fast_load import fast_loader

COMMAND_OK: dict[str, Any] = {
    "task_id": "t1",
    "node_id": "n1",
    "status": "succeeded",
    "at": 1764800000.25,
    "pid": 42,
    "exit_code": 0,
    "stdout": "hi\n",
    "stderr": "",
    "stdout_truncated": False,
    "stderr_truncated": True,
    "started_at": 1764800000,
    "finished_at": 1764800000.5,
    "error_message": None,
}
EVENT_OK: dict[str, Any] = {"task_id": "t1", "deployment_id": "d1", "node_id": "n1", "state": "RUNNING", "at": 1.5}

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    2**70,
    10**400,
    1.5,
    float("nan"),
    float("inf"),
    "",
    "x",
    "12",
    "1.5",
    "true",
    "running",
    "succeeded",
    "RUNNING",
    "nul\x00",
    b"bytes",
    [],
    {},
    [1],
]
"""Values of every JSON type (and a few that only Python callers send) put in every field in turn."""


def _outcome(load: Any, message: Any) -> tuple[str, Any]:
    try:
        return "ok", load(message)
    except ValidationError as exc:
        return "error", exc.messages


def _same(a: Any, b: Any) -> bool:
    # NaN is never equal to itself; nothing valid holds one, but compare it as a value anyway.
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


def _check_equivalent(schema: Schema, message: Any) -> None:
    fast = fast_loader(schema)
    assert fast is not None
    expected = _outcome(schema.load, message)
    quick = fast(message)
    if quick is None:
        return  # left to the schema: same answer by construction
    assert expected[0] == "ok", (message, expected)
    assert list(quick) == list(expected[1])  # the same fields, in the same order
    for name, value in expected[1].items():
        assert _same(quick[name], value), (name, quick[name], value)
    # What a publisher sends on the wire is the dump of the load: the fast load is that already.
    assert json.dumps(quick) == json.dumps(schema.dump(schema.load(message)))


@pytest.mark.parametrize(("schema_class", "valid"), [(CommandReportSchema, COMMAND_OK), (TaskEventSchema, EVENT_OK)])
def test_the_fast_load_equals_the_schemas_on_valid_and_malformed_messages(
    schema_class: type[Schema], valid: dict[str, Any]
) -> None:
    schema = schema_of(schema_class)
    _check_equivalent(schema, valid)
    assert fast_loader(schema)(valid) is not None  # type: ignore[misc]  # the usual message takes the fast path
    for name in list(schema.load_fields) + ["unknown_field"]:
        for value in ODD_VALUES:
            _check_equivalent(schema, {**valid, name: value})
        _check_equivalent(schema, {k: v for k, v in valid.items() if k != name})  # missing
    for value in ODD_VALUES:
        _check_equivalent(schema, value)  # not a dict at all
    rng = random.Random(16)
    names = list(schema.load_fields)
    for _ in range(2000):  # several fields odd at once
        message = dict(valid)
        for name in rng.sample(names, rng.randint(1, 4)):
            if rng.random() < 0.2:
                message.pop(name, None)
            else:
                message[name] = rng.choice(ODD_VALUES)
        _check_equivalent(schema, message)


def test_a_schema_with_rules_the_fast_path_does_not_know_has_none() -> None:
    class Sized(Schema):
        name = fields.String(validate=validate.Length(max=3))

    class Nested(Schema):
        tags = fields.List(fields.String())

    class Keyed(Schema):
        name = fields.String(data_key="Name")

    for schema_class in (Sized, Nested, Keyed):
        assert fast_loader(schema_class()) is None


def test_text_fields_refuse_a_nul_as_the_schema_does() -> None:
    class Named(Schema):
        name = Text(required=True)

    schema = Named()
    assert fast_loader(schema) is not None
    for value in ["web", "", "a\x00b", 3, None]:
        _check_equivalent(schema, {"name": value})


def test_parse_report_keeps_the_schemas_errors() -> None:
    body = json.dumps({**COMMAND_OK, "status": "exploded"})
    with pytest.raises(ValidationError) as caught:
        report_streams.parse_report({b"kind": b"command", b"body": body.encode()}, "n1")
    assert caught.value.messages == {"status": ["Must be one of: canceled, failed, running, succeeded, timed_out."]}


def test_a_command_report_of_an_agent_side_firing_is_left_to_the_schema() -> None:
    """Absent or null, the nested ``schedule`` keeps the fast path; given, the schema loads it."""
    schema = schema_of(CommandReportSchema)
    fast = fast_loader(schema)
    assert fast is not None and fast({**COMMAND_OK, "schedule": None}) is not None
    firing = {"id": "s1", "name": "tick", "fired_at": "2026-01-02T03:04:05+00:00", "command": "true", "timeout": 5.0}
    assert fast({**COMMAND_OK, "schedule": firing}) is None
    assert schema.load({**COMMAND_OK, "schedule": firing})["schedule"] == firing
