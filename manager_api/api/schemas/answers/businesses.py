"""Answers of the businesses API: one business with its components and history, the list, the components,
the usage history (presenters.businesses), and what deploy, update, stop, restart and delete answer
(services.businesses)."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import (
    Answer,
    Number,
    PageAnswer,
    any_object,
    boolean,
    counts,
    integer,
    many,
    nested,
    number,
    one_of,
    strings,
    text,
    time,
)
from manager_api.services.businesses.state import REMOVED, RUNNING, STOPPED
from shared.states import BusinessState, ComponentState, ComponentType


class ComponentUsageAnswer(Answer):
    """A component's last reported usage."""

    cpu_percent = number(nullable=True)
    memory_mb = number(nullable=True)
    gpu_percent = number(nullable=True)


class ComponentAnswer(Answer):
    """One component of a business; its environment's names and config files' paths only (never values)."""

    component_id = text()
    component_name = text()
    type = one_of(ComponentType)
    node_id = text(nullable=True)
    hostname = text(nullable=True)
    status = one_of(ComponentState)
    desired = one_of([RUNNING, STOPPED, REMOVED])
    generation = integer()
    container_id = text(nullable=True)
    pid = integer(nullable=True)
    exit_code = integer(nullable=True)
    resource_usage = nested(ComponentUsageAnswer, nullable=True, metadata={"description": "Null: none reported."})
    resource_requirements = any_object(metadata={"description": "As requested."})
    affinity = any_object()
    image_name = text(nullable=True)
    image_url = text(nullable=True)
    command = text()
    environment_keys = strings()
    secret_environment_variables = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": 'Names of the secret env, each with "(secret)": a value is never answered.'},
    )
    config_paths = strings()
    started_at = time(nullable=True)
    updated_at = time()
    usage_at = time(nullable=True)
    error_message = text(nullable=True)


class TransitionAnswer(Answer):
    """One transition of a business (component_id null) or of one of its components."""

    at = time()
    component_id = text(nullable=True)
    generation = integer(nullable=True)
    from_status = text(nullable=True, data_key="from")
    to = text()
    reason = text(nullable=True)
    actor = text()


class BusinessSummaryAnswer(Answer):
    business_id = text()
    business_name = text()
    status = one_of(BusinessState)
    message = text(nullable=True, metadata={"description": "Why it failed, when it did."})
    rollback_on_failure = boolean()
    created_by = text()
    created_at = time()
    updated_at = time()


class BusinessAnswer(BusinessSummaryAnswer):
    """A business with its components and recent transitions."""

    components = many(ComponentAnswer)
    history = many(TransitionAnswer)


class BusinessListItemAnswer(BusinessSummaryAnswer):
    component_count = integer()
    component_states = counts()


class BusinessPageAnswer(PageAnswer):
    businesses = many(BusinessListItemAnswer)


class ComponentSeriesAnswer(Answer):
    """One value per time of ``times``, null where the component has no sample then."""

    cpu_percent = fields.List(Number(allow_none=True), required=True)
    memory_mb = fields.List(Number(allow_none=True), required=True)


class BusinessUsageAnswer(Answer):
    business_id = text()
    times = fields.List(Number(), required=True, metadata={"description": "Epoch seconds, oldest first."})
    components = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ComponentSeriesAnswer),
        required=True,
        metadata={"description": "By component id."},
    )


class PlacementAnswer(Answer):
    """Where a dry run would place one component."""

    component_id = text()
    node_id = text()
    hostname = text()
    score = number()
    reason = text()


class BusinessOutcomeAnswer(Answer):
    """What deploy, update, stop, restart and delete answer; a dry run adds ``plan``, an update what it did."""

    status = one_of(["success"])
    message = text()
    business_id = text()
    plan = fields.List(fields.Nested(PlacementAnswer), metadata={"description": "Dry run only."})
    removed = fields.List(fields.String(), metadata={"description": "Update only: component ids."})
    changed = fields.List(fields.String())
    added = fields.List(fields.String())
    unchanged = fields.List(fields.String())
