"""Wire schemas of what crosses between manager and agents: the join call, job payloads, task events.

Both sides load what they receive through these schemas, so a malformed message fails loudly at the
boundary instead of deep inside a service.
"""

from __future__ import annotations

import functools
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate

from . import keys
from .config_paths import MAX_CONFIG_FILE_BYTES, MAX_CONFIG_FILES, config_relpath, is_safe_id
from .defaults import (
    APP_BACKOFF_FACTOR,
    APP_BACKOFF_SECONDS,
    APP_KILL_SIGNAL,
    APP_MAX_BACKOFF_SECONDS,
    APP_STOP_GRACE_SECONDS,
    COMPONENT_STOP_GRACE_SECONDS,
    TASK_TIMEOUT_MAX,
)
from .states import (
    AGENT_REPORTED_COMPONENT_STATES,
    AGENT_REPORTED_HOST_STATUSES,
    AGENT_REPORTED_INSTANCE_STATES,
    AGENT_REPORTED_STATES,
    AppHealth,
    ComponentType,
    HealthCheckProtocol,
)

NO_NUL_PATTERN = r"^[^\x00]*$"
"""A Text field's pattern in the OpenAPI document: any string without a NUL (ECMA-262 and Python alike)."""
NUL_REFUSED = "contains a NUL byte"
"""What a field answers to a NUL byte (names, labels, hostnames, commands: see Text)."""


def no_nul(value: str) -> None:
    """Validator: refuse a string holding a NUL byte."""
    if "\x00" in value:
        raise ValidationError(NUL_REFUSED)


class Text(fields.String):
    """A string without NUL bytes: the type of every name, label, hostname and command of the API.

    A NUL cannot cross into argv, the environment, a path or a hostname (C strings end at it), and a tool
    reading the database would cut the text there; so it is refused at the door, naming the field.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # First, so that the NUL is what a field reports even when another rule fails on it too.
        self.validators.insert(0, no_nul)
        # The OpenAPI document says so (apispec copies a field's metadata), unless a pattern of the field's
        # own (a Regexp, or one in its metadata) already keeps the NUL out: JSON Schema has one pattern.
        if "pattern" not in self.metadata and not any(isinstance(v, validate.Regexp) for v in self.validators):
            self.metadata = {**self.metadata, "pattern": NO_NUL_PATTERN}


class _Wire(Schema):
    class Meta:
        # Newer peers may add fields; an older peer ignores them instead of failing.
        unknown = EXCLUDE


def _labels_without_nul(facts: dict[str, Any]) -> None:
    # Only labels are checked here: the rest of the facts is free-form, and the manager keeps the labels it can
    # use and ignores the others (services.node_labels); but a NUL in one is a malformed join, not a bad label.
    labels = facts.get("labels")
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        for part, text in (("key", key), ("value", value)):
            if isinstance(text, str) and "\x00" in text:
                raise ValidationError({"labels": {key: {part: [NUL_REFUSED]}}})


class JoinRequestSchema(_Wire):
    """Body of POST /api/agent/join, sent by an agent when it starts or reconnects."""

    class Meta:
        # Unlike the other messages, refused: agents and manager are upgraded together (README, Security), the
        # agent sends exactly these fields (worker_agent/agent.py), and this public endpoint should not store
        # what nobody checked.
        unknown = RAISE

    # keys.NODE_ID: the id is spelled into the node's Redis user's key patterns (agents make 32 hex digits).
    node_id = Text(required=True, validate=validate.Regexp(keys.NODE_ID, error="letters, digits and '-' only, 1 to 64"))
    hostname = Text(required=True, validate=validate.Length(min=1, max=255))
    ip = Text(required=True, validate=validate.Length(min=1, max=64))
    interval = fields.Float(required=True, validate=validate.Range(min=0.1, max=3600))
    protocol = fields.Integer(required=True)
    version = Text(load_default="")
    facts = fields.Dict(keys=Text(), load_default=dict, validate=_labels_without_nul)
    # Made by the agent at its first start; the manager keeps its digest and asks for it at every later join
    # under this node id, so that nobody else (even with the join token) can take the node's place.
    node_secret = Text(required=True, validate=validate.Length(min=16, max=128))


class JoinResponseSchema(_Wire):
    """Answer of POST /api/agent/join: all an agent needs to work its queue."""

    node_id = fields.String(required=True)
    redis_url = fields.String(required=True)
    queue = fields.String(required=True)
    protocol = fields.Integer(required=True)
    job_key = fields.String(required=True)  # hex key of this node's job signatures (shared.job_signing)


class StartTaskSchema(_Wire):
    """Payload of jobs.START_TASK."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    deployment_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True)
    command = fields.String(required=True, validate=validate.Length(min=1))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)


class StopTasksSchema(_Wire):
    """Payload of jobs.STOP_TASKS."""

    task_ids = fields.List(fields.String(), required=True)
    deployment_id = fields.String(load_default="")  # so a node that never knew a task can still report it
    grace_seconds = fields.Float(load_default=5.0, validate=validate.Range(min=0, max=3600))


class TaskEventSchema(_Wire):
    """A change of a task's state, appended by an agent to its keys.node_reports (kind "event")."""

    task_id = fields.String(required=True)
    deployment_id = fields.String(required=True)
    node_id = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_STATES)))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    started_at = fields.Float(allow_none=True, load_default=None)
    error = fields.String(allow_none=True, load_default=None)


class RunCommandSchema(_Wire):
    """Payload of jobs.RUN_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    command = fields.String(required=True, validate=validate.Length(min=1))
    timeout = fields.Float(required=True, validate=validate.Range(min=0.1, max=TASK_TIMEOUT_MAX))
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    secret_env = fields.String(load_default=None, allow_none=True)
    """shared.secret_env.seal of the task's secret env for this node, bound to "task:<task_id>"; None for none."""
    deadline = fields.Float(load_default=None, allow_none=True)
    """Redis time (unix seconds) the command must have ended by: the agent never starts it later (it reports
    it expired) and kills it then. The manager gives up on the host only after it plus a slack, so a command
    never runs after its task reads final. None from managers that predate it."""


class CancelCommandSchema(_Wire):
    """Payload of jobs.CANCEL_COMMAND."""

    task_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class CommandReportSchema(_Wire):
    """One node's report on a fleet task, appended by its agent to its keys.node_reports (kind "command").

    A ``running`` report comes when the command starts; one final report (succeeded, failed, timed_out,
    canceled) carries the captured output, each capped at defaults.OUTPUT_CAP_BYTES.
    """

    task_id = fields.String(required=True)
    node_id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_HOST_STATUSES)))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    exit_code = fields.Integer(allow_none=True, load_default=None)
    stdout = fields.String(load_default="")
    stderr = fields.String(load_default="")
    stdout_truncated = fields.Boolean(load_default=False)
    stderr_truncated = fields.Boolean(load_default=False)
    started_at = fields.Float(allow_none=True, load_default=None)
    finished_at = fields.Float(allow_none=True, load_default=None)
    error_message = fields.String(allow_none=True, load_default=None)


class OutputLineSchema(_Wire):
    """One entry of keys.task_output(task_id, node_id): a line (or a chunk of a very long line) of one node."""

    node_id = fields.String(required=True)
    stream = fields.String(required=True, validate=validate.OneOf(["stdout", "stderr"]))
    line = fields.String(required=True)


def _safe_id(value: str) -> bool:
    if not is_safe_id(value):
        raise ValidationError("must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return True


def _safe_config_path(value: str) -> bool:
    try:
        config_relpath(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc
    return True


class ResourceRequirementsSchema(_Wire):
    """What a component reserves on its node (document 001 §3.1); placement places by it."""

    cpu_cores = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    memory_mb = fields.Integer(load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))
    gpu = fields.Boolean(load_default=False)  # true: the component needs one whole GPU of its node


class ConfigFileSchema(_Wire):
    """A file written (atomically) for the component before it starts; see shared.config_paths."""

    path = fields.String(required=True, validate=_safe_config_path)
    content = fields.String(required=True, validate=validate.Length(max=MAX_CONFIG_FILE_BYTES))


class ResourceUsageSchema(_Wire):
    """A component's measured usage (document 001 §6.3)."""

    cpu_percent = fields.Float(load_default=0.0)
    memory_mb = fields.Float(load_default=0.0)
    gpu_percent = fields.Float(allow_none=True, load_default=None)


class ComponentSpecSchema(_Wire):
    """Payload of jobs.DEPLOY_COMPONENT: document 001 §6.1 plus what a process needs and a generation.

    ``generation`` grows each time the manager replaces the component (restart, changed by an update):
    an agent holding an older generation stops it and starts this one; the same generation again is a
    no-op, so a redelivered job never starts a component twice.
    """

    business_id = fields.String(required=True, validate=_safe_id)
    component_id = fields.String(required=True, validate=_safe_id)
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


class StopComponentSchema(_Wire):
    """Payload of jobs.STOP_COMPONENT (document 001 §6.2): stop and remove the component's process or
    container, if the agent holds a generation no newer than ``generation`` (0: whatever it holds)."""

    business_id = fields.String(required=True, validate=_safe_id)
    component_id = fields.String(required=True, validate=_safe_id)
    container_id = fields.String(allow_none=True, load_default=None)
    generation = fields.Integer(load_default=0, validate=validate.Range(min=0))
    grace_seconds = fields.Float(load_default=COMPONENT_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))


class ComponentReportSchema(_Wire):
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


class HealthCheckSpecSchema(_Wire):
    """One health check of an app instance (document 003 §5.2.1 ``healthChecks[]``), run by the agent on its node.

    The manager fills every default (api/schemas/apps.py) and checks ``port_index`` against the app's ports.
    """

    protocol = fields.String(required=True, validate=validate.OneOf([p.value for p in HealthCheckProtocol]))
    path = fields.String(load_default="/")  # HTTP
    port_index = fields.Integer(load_default=0, validate=validate.Range(min=0))  # HTTP, TCP
    command = fields.String(load_default="")  # COMMAND: through /bin/sh -c in the instance's cwd and environment
    initial_delay_seconds = fields.Float(required=True, validate=validate.Range(min=0, max=86400))
    interval_seconds = fields.Float(required=True, validate=validate.Range(min=0.1, max=86400))
    timeout_seconds = fields.Float(required=True, validate=validate.Range(min=0.1, max=3600))
    max_consecutive_failures = fields.Integer(required=True, validate=validate.Range(min=1, max=1000))


class ResourceAllocSchema(_Wire):
    """What an app instance may use (document 003 §5.2.1 ``resAlloc``): placement reserves it, and the agent
    enforces it with cgroups where it can (0: no limit)."""

    cpus = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    mem_mb = fields.Integer(load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))


class InstanceSpecSchema(_Wire):
    """Payload of jobs.RUN_INSTANCE: one instance of an app, as the agent starts and keeps it running.

    The agent keeps it running until jobs.STOP_INSTANCE: started again when its process exits or its checks
    fail, after a backoff. The same ``instance_id`` again is a no-op while it runs (a redelivered job never
    starts a second copy); a rolling update makes new instances rather than changing one.
    """

    app = fields.String(required=True, validate=_safe_id)
    instance_id = fields.String(required=True, validate=_safe_id)
    version = fields.Integer(required=True, validate=validate.Range(min=1))  # of the app's definition
    command = fields.String(required=True, validate=validate.Length(min=1))  # toProcess; with args, via /bin/sh -c
    args = fields.List(fields.String(), load_default=list)
    working_dir = fields.String(allow_none=True, load_default=None)  # None: a directory of the agent's own
    env = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    secret_env = fields.String(load_default=None, allow_none=True)
    """shared.secret_env.seal of the app's secretEnvs for this node, bound to secret_env.instance_context; None
    for none. The agent keeps it sealed (apps.json) and opens it at each start of the process."""
    ports = fields.List(fields.Integer(validate=validate.Range(min=0, max=65535)), load_default=list)  # 0: agent picks
    kill_signal = fields.Integer(load_default=APP_KILL_SIGNAL, validate=validate.Range(min=1, max=64))
    stop_grace_seconds = fields.Float(load_default=APP_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))
    uris = fields.List(fields.String(), load_default=list)  # http(s):// or sftp://; .zip unpacked
    health_checks = fields.List(fields.Nested(HealthCheckSpecSchema), load_default=list)
    res_alloc = fields.Nested(ResourceAllocSchema, allow_none=True, load_default=None)
    backoff_seconds = fields.Float(load_default=APP_BACKOFF_SECONDS, validate=validate.Range(min=0, max=3600))
    backoff_factor = fields.Float(load_default=APP_BACKOFF_FACTOR, validate=validate.Range(min=1, max=100))
    max_backoff_seconds = fields.Float(load_default=APP_MAX_BACKOFF_SECONDS, validate=validate.Range(min=0, max=86400))


class StopInstanceSchema(_Wire):
    """Payload of jobs.STOP_INSTANCE: stop an app instance for good (killSignal to its process group, SIGKILL
    after the grace), free its ports once it is gone, and forget it; an unknown instance reads stopped."""

    app = fields.String(required=True, validate=_safe_id)
    instance_id = fields.String(required=True, validate=_safe_id)
    kill_signal = fields.Integer(load_default=APP_KILL_SIGNAL, validate=validate.Range(min=1, max=64))
    grace_seconds = fields.Float(load_default=APP_STOP_GRACE_SECONDS, validate=validate.Range(min=0, max=3600))
    reason = fields.String(load_default="")  # why, for the agent's log (scaled down, replaced, stale copy...)


class InstanceRestartSchema(_Wire):
    """One automatic restart of an app instance: when and why (exit code, signal, failed check, out of memory)."""

    at = fields.Float(required=True)  # unix time on the agent when the old process ended
    reason = fields.String(required=True)  # e.g. "exited with code 1", "killed by signal 9", "health check failed
    # 3 times in a row: HTTP 500", "out of memory (cgroup limit 64 MB)"
    exit_code = fields.Integer(allow_none=True, load_default=None)
    signal = fields.Integer(allow_none=True, load_default=None)
    oom = fields.Boolean(load_default=False)


class HealthResultSchema(_Wire):
    """The last result of an instance's health checks."""

    at = fields.Float(required=True)  # unix time on the agent
    ok = fields.Boolean(required=True)
    answer = fields.String(load_default="")  # "HTTP 200", "connection refused", "exit 1: <first output line>"...
    consecutive_failures = fields.Integer(load_default=0)


class InstanceReportSchema(_Wire):
    """An app instance's state, appended by its agent to its keys.node_reports (kind "instance") on every change
    and every defaults.APP_REPORT_INTERVAL while the agent holds it (so the manager can stop copies it no
    longer wants: one rule, the manager decides)."""

    # Safe ids as in the spec: the manager answers a report of an instance it does not want with a stop naming
    # them, so a malformed one is refused here rather than when that stop is built.
    app = fields.String(required=True, validate=_safe_id)
    instance_id = fields.String(required=True, validate=_safe_id)
    node_id = fields.String(required=True)
    version = fields.Integer(required=True)
    state = fields.String(required=True, validate=validate.OneOf(sorted(AGENT_REPORTED_INSTANCE_STATES)))
    health = fields.String(required=True, validate=validate.OneOf([h.value for h in AppHealth]))
    at = fields.Float(required=True)  # unix time on the agent
    pid = fields.Integer(allow_none=True, load_default=None)
    ports = fields.List(fields.Integer(), load_default=list)  # as assigned, in the order of the spec's ports
    started_at = fields.Float(allow_none=True, load_default=None)  # of the current process
    restarts = fields.Integer(load_default=0)  # automatic restarts so far
    restart = fields.Nested(InstanceRestartSchema, allow_none=True, load_default=None)  # set when one just happened
    next_start_at = fields.Float(allow_none=True, load_default=None)  # BACKOFF: when it starts again
    exit_code = fields.Integer(allow_none=True, load_default=None)  # of the last process that ended
    signal = fields.Integer(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)  # last end or failure, as InstanceRestartSchema
    last_check = fields.Nested(HealthResultSchema, allow_none=True, load_default=None)
    limits = fields.String(allow_none=True, load_default=None)  # "enforced (cgroup v1)", "not enforced: ..."


@functools.cache
def schema_of(schema: type[Schema]) -> Schema:
    """The one instance of ``schema`` this process uses. Making a schema costs more than loading a small
    message (a 100-instance app's dispatch made 200 of them); marshmallow 4 keeps no per-call state in the
    instance, so threads share it."""
    return schema()


def dump(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing message with ``schema`` and return it ready for JSON."""
    instance = schema_of(schema)
    return instance.dump(instance.load(data))
