"""Business components (document 001): the DEPLOY_COMPONENT and STOP_COMPONENT payloads, and the agents'
component reports with their usage."""

from __future__ import annotations

from marshmallow import fields, validate

from ..config_paths import MAX_CONFIG_FILE_BYTES, MAX_CONFIG_FILES
from ..defaults import COMPONENT_STOP_GRACE_SECONDS
from ..states import AGENT_REPORTED_COMPONENT_STATES, ComponentType
from .base import WireSchema
from .ids import safe_config_path, safe_id


class ResourceRequirementsSchema(WireSchema):
    """What a component reserves on its node (document 001 §3.1); placement places by it."""

    cpu_cores = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    memory_mb = fields.Integer(load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))
    gpu = fields.Boolean(load_default=False)  # true: the component needs one whole GPU of its node


class ConfigFileSchema(WireSchema):
    """A file written (atomically) for the component before it starts; see shared.config_paths."""

    path = fields.String(required=True, validate=safe_config_path)
    content = fields.String(required=True, validate=validate.Length(max=MAX_CONFIG_FILE_BYTES))


class ResourceUsageSchema(WireSchema):
    """A component's measured usage (document 001 §6.3)."""

    cpu_percent = fields.Float(load_default=0.0)
    memory_mb = fields.Float(load_default=0.0)
    gpu_percent = fields.Float(allow_none=True, load_default=None)


class ComponentSpecSchema(WireSchema):
    """Payload of jobs.DEPLOY_COMPONENT: document 001 §6.1 plus what a process needs and a generation.

    ``generation`` grows each time the manager replaces the component (restart, changed by an update):
    an agent holding an older generation stops it and starts this one; the same generation again is a
    no-op, so a redelivered job never starts a component twice.
    """

    business_id = fields.String(required=True, validate=safe_id)
    component_id = fields.String(required=True, validate=safe_id)
    component_name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    type = fields.String(required=True, validate=validate.OneOf([t.value for t in ComponentType]))
    generation = fields.Integer(required=True, validate=validate.Range(min=1))
    # process: ``command`` runs through /bin/sh -c unless ``args`` is given, then it is exec'd with them.
    # docker: ``command``/``args`` override the image's command when given.
    command = fields.String(load_default="")
    args = fields.List(fields.String(), load_default=list)
    working_dir = fields.String(allow_none=True, load_default=None)
    image_url = fields.String(allow_none=True, load_default=None)  # http(s):// or sftp://
    image_name = fields.String(allow_none=True, load_default=None)
    resource_requirements = fields.Nested(
        ResourceRequirementsSchema, load_default=lambda: {"cpu_cores": 0.0, "memory_mb": 0, "gpu": False}
    )
    environment_variables = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    secret_env = fields.String(load_default=None, allow_none=True)
    """shared.secret_env.seal of secret_environment_variables for this node, bound to
    secret_env.component_context; None for none. Kept sealed in components.json, opened at each start."""
    config_files = fields.List(
        fields.Nested(ConfigFileSchema), load_default=list, validate=validate.Length(max=MAX_CONFIG_FILES)
    )
    stop_grace_seconds = fields.Float(
        load_default=COMPONENT_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600)
    )


class StopComponentSchema(WireSchema):
    """Payload of jobs.STOP_COMPONENT (document 001 §6.2): stop and remove the component's process or
    container, if the agent holds a generation no newer than ``generation`` (0: whatever it holds)."""

    business_id = fields.String(required=True, validate=safe_id)
    component_id = fields.String(required=True, validate=safe_id)
    container_id = fields.String(allow_none=True, load_default=None)
    generation = fields.Integer(load_default=0, validate=validate.Range(min=0))
    grace_seconds = fields.Float(load_default=COMPONENT_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))


class ComponentReportSchema(WireSchema):
    """A component's state and usage (document 001 §6.3), appended by its agent to
    its keys.node_reports (kind "component") on every change of state and every heartbeat interval while it runs."""

    business_id = fields.String(required=True)
    component_id = fields.String(required=True)
    node_id = fields.String(required=True)
    generation = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_COMPONENT_STATES)))
    timestamp = fields.Float(required=True)  # unix time on the agent
    container_id = fields.String(allow_none=True, load_default=None)
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    resource_usage = fields.Nested(ResourceUsageSchema, allow_none=True, load_default=None)
    error_message = fields.String(allow_none=True, load_default=None)
