"""Bodies and queries of the workflows API (issue 17): steps, each a fleet task body with its dependencies."""

from __future__ import annotations

from typing import Any

from marshmallow import fields, post_load, pre_load, validate

from manager_api.api.schemas.manual import (
    MAX_NAME,
    FleetTaskSchema,
    PageQuerySchema,
    ProcessorSchema,
    Text,
    TrimmedString,
    WaitQuerySchema,
    _Strict,
)
from manager_api.services.workflows.advance import CONTINUE, STOP
from manager_api.services.workflows.graph import MAX_STEPS
from shared.states import WorkflowStatus

STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
"""A step's name: identifier-like, so that ``succeeded_on:<name>`` and log lines read plainly."""


class WorkflowStepSchema(_Strict):
    """One step: a fleet task body (POST /api/tasks') run once the steps it depends on have ended."""

    name = fields.String(
        required=True,
        validate=validate.Regexp(STEP_NAME, error="a letter or _ then up to 63 letters, digits, _ . or -"),
    )
    depends_on = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list)
    on_failed_dependency = fields.String(
        load_default=STOP,
        validate=validate.OneOf([STOP, CONTINUE]),
        metadata={
            "description": 'When a step it depends on did not succeed: "stop" (default) skips this step and '
            'starts no other step (running ones finish; the workflow ends failed), "continue" runs it anyway.'
        },
    )
    task = fields.Nested(FleetTaskSchema, required=True)

    @pre_load
    def _task_named_after_step(self, data: Any, **kwargs: Any) -> Any:
        # A fleet task needs a name: the step's, unless the body gives one.
        if isinstance(data, dict) and isinstance(data.get("task"), dict) and "name" not in data["task"]:
            data = {**data, "task": {**data["task"], "name": str(data.get("name", ""))}}
        return data


class WorkflowSchema(_Strict):
    """Body of POST /api/workflows."""

    name = TrimmedString(required=True, validate=validate.Length(min=1, max=MAX_NAME))
    steps = fields.List(
        fields.Nested(WorkflowStepSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_STEPS, error="Must hold between {min} and {max} steps."),
    )
    processor = fields.Nested(
        ProcessorSchema,
        allow_none=True,
        load_default=None,
        metadata={
            "description": "Handed to every step's task that names none: each node's result and each step's "
            "summary reach it."
        },
    )

    @post_load
    def _processor_to_steps(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        processor = data.pop("processor", None)
        if processor:
            for step in data["steps"]:
                if not step["task"].get("processor"):
                    step["task"]["processor"] = processor
        return data


class WorkflowCreateQuerySchema(WaitQuerySchema):
    """``?wait=N``: seconds to wait for the workflow to end before answering."""


class WorkflowListQuerySchema(PageQuerySchema):
    """Query string of GET /api/workflows."""

    status = Text(validate=validate.OneOf([s.value for s in WorkflowStatus]))
    name = Text(validate=validate.Length(max=MAX_NAME))
