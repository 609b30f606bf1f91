"""Marshmallow schemas of the public API (manual §5.3): strict, trimmed, bounded."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from .services.commands import split_pin

MAX_NAME = 255
MAX_COMMAND = 8192
MAX_GROUPS = 100
MAX_TASKS_PER_GROUP = 100
MAX_ID = 64


class TrimmedString(fields.String):
    """A string with surrounding whitespace removed before validation."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _bounded(max_length: int) -> list[validate.Validator]:
    return [validate.Length(min=1, error="Must not be empty."), validate.Length(max=max_length)]


def _name() -> TrimmedString:
    return TrimmedString(required=True, validate=_bounded(MAX_NAME))


class TaskConfigSchema(_Strict):
    """``config`` of a task: the command line, optionally the host it is pinned to."""

    command = TrimmedString(required=True, validate=_bounded(MAX_COMMAND))
    # What /api/task/query shows back; accepted so a queried template can be posted again.
    host = TrimmedString(validate=_bounded(MAX_NAME))

    @validates_schema
    def _one_pin(self, data: dict[str, Any], **kwargs: Any) -> None:
        host = data.get("host")
        pin, _ = split_pin(data.get("command", ""))
        if host and pin and pin != host:
            raise ValidationError(f"command is pinned to '{pin}' but host says '{host}'", "host")


class TaskSchema(_Strict):
    """One task of a group."""

    name = _name()
    config = fields.Nested(TaskConfigSchema, required=True)


class TaskGroupSchema(_Strict):
    """Tasks that run together on one node."""

    tasks = fields.List(
        fields.Nested(TaskSchema), required=True, validate=validate.Length(min=1, max=MAX_TASKS_PER_GROUP)
    )


class TemplateSchema(_Strict):
    """Body of POST /api/task/task_group."""

    name = _name()
    task_groups = fields.List(
        fields.Nested(TaskGroupSchema), required=True, validate=validate.Length(min=1, max=MAX_GROUPS)
    )


class NameSchema(_Strict):
    """Body naming a template: POST /api/task/query and /api/task/task_group/deploy."""

    name = _name()


class IdSchema(_Strict):
    """Body naming a deployment: POST /api/task/task_group/query and /stop."""

    id = TrimmedString(required=True, validate=_bounded(MAX_ID))


class AuditQuerySchema(_Strict):
    """Query string of GET /api/audit."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
