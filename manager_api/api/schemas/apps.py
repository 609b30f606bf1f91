"""Marshmallow schemas of the apps API (document 003 §5.2.1 and §5.2.2): the spec's camelCase, strict, bounded.

A failed check answers 400 naming the field the way the user wrote it (``healthChecks[0].portIndex: ...``);
every default is filled here, so the stored definition is complete and two definitions compare as dicts.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from manager_api.api.schemas.businesses import (
    ENV_NAME,
    IMAGE_URL_SCHEMES,
    MAX_ARGS,
    MAX_COMMAND,
    MAX_ENV,
    MAX_ENV_VALUE,
    MAX_URL,
    _bad_request,
    _safe_id,
)
from manager_api.api.schemas.manual import _Strict
from manager_api.services.errors import INVALID_REQUEST, Invalid
from manager_api.services.nodes import query as node_query
from shared.config_paths import SAFE_ID_PATTERN
from shared.defaults import APP_BACKOFF_FACTOR, APP_BACKOFF_SECONDS, APP_KILL_SIGNAL, APP_MAX_BACKOFF_SECONDS
from shared.messages import Text
from shared.states import HealthCheckProtocol

MAX_INSTANCES = 1000
"""Most instances one app may ask for."""
MAX_PORTS = 64
MAX_URIS = 64
MAX_HEALTH_CHECKS = 16
MAX_UNREACHABLE_SECONDS = 7 * 86400

HEALTH_DEFAULTS = {
    "path": "/",
    "portIndex": 0,
    "command": "",
    "initialDelaySeconds": 15.0,
    "intervalSeconds": 10.0,
    "timeoutSeconds": 5.0,
    "maxConsecutiveFailures": 3,
}
"""What a health check leaves out: a first check 15 s after the start, then every 10 s, each given 5 s, and the
instance restarted after 3 failures in a row."""


def _env_name(value: str) -> None:
    if not ENV_NAME.match(value):
        raise ValidationError(f"environment variable name {value!r} must be letters, digits, '_', '.', '-'")


def _uri(value: str) -> None:
    if not value.startswith(IMAGE_URL_SCHEMES):
        raise ValidationError(f"{value!r}: a uri must start with http://, https:// or sftp://")


def _node_query(value: str) -> None:
    try:
        node_query.parse(value, parameter="nodeQuery")
    except Invalid as exc:  # its message names the parameter, as the answer's prefix will
        raise ValidationError(exc.message.removeprefix(f"{INVALID_REQUEST}: nodeQuery: ")) from exc


class HealthCheckRequest(_Strict):
    """One of ``healthChecks``."""

    protocol = Text(required=True, validate=validate.OneOf([p.value for p in HealthCheckProtocol]))
    path = Text(load_default=HEALTH_DEFAULTS["path"], validate=validate.Length(min=1, max=MAX_URL))
    portIndex = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=MAX_PORTS - 1))
    command = Text(load_default="", validate=validate.Length(max=MAX_COMMAND))
    initialDelaySeconds = fields.Float(
        load_default=HEALTH_DEFAULTS["initialDelaySeconds"], validate=validate.Range(0, 86400)
    )
    intervalSeconds = fields.Float(load_default=HEALTH_DEFAULTS["intervalSeconds"], validate=validate.Range(0.1, 86400))
    timeoutSeconds = fields.Float(load_default=HEALTH_DEFAULTS["timeoutSeconds"], validate=validate.Range(0.1, 3600))
    maxConsecutiveFailures = fields.Integer(
        strict=True, load_default=HEALTH_DEFAULTS["maxConsecutiveFailures"], validate=validate.Range(1, 1000)
    )

    @validates_schema
    def _command_given(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("protocol") == HealthCheckProtocol.COMMAND.value and not (data.get("command") or "").strip():
            raise ValidationError("a COMMAND health check needs a command", "command")


class ResAllocRequest(_Strict):
    """``resAlloc``: what each instance reserves on its node (and its agent enforces where it can)."""

    cpus = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    memMb = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))


class AppRequest(_Strict):
    """Body of POST /api/apps and PUT /api/apps/{name}."""

    name = Text(required=True, validate=_safe_id, metadata={"pattern": SAFE_ID_PATTERN})
    toProcess = Text(required=True, validate=validate.Length(min=1, max=MAX_COMMAND))
    workingDirectory = Text(allow_none=True, load_default=None, validate=validate.Length(min=1, max=1024))
    envs = fields.Dict(
        keys=Text(validate=_env_name),
        values=Text(validate=validate.Length(max=MAX_ENV_VALUE)),
        load_default=dict,
        validate=validate.Length(max=MAX_ENV),
    )
    # Encrypted at rest, sealed for each instance's node, answered as names only (services.secret_store). None
    # when left out: a PUT without it keeps the stored ones.
    secretEnvs = fields.Dict(
        keys=Text(validate=_env_name),
        values=Text(validate=validate.Length(max=MAX_ENV_VALUE)),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=MAX_ENV),
    )
    args = fields.List(
        Text(validate=validate.Length(max=MAX_COMMAND)), load_default=list, validate=validate.Length(max=MAX_ARGS)
    )
    ports = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=0, max=65535)),
        load_default=list,
        validate=validate.Length(max=MAX_PORTS),
    )
    killSignal = fields.Integer(strict=True, load_default=APP_KILL_SIGNAL, validate=validate.Range(min=1, max=64))
    uris = fields.List(
        Text(validate=[validate.Length(max=MAX_URL), _uri]), load_default=list, validate=validate.Length(max=MAX_URIS)
    )
    healthChecks = fields.List(
        fields.Nested(HealthCheckRequest), load_default=list, validate=validate.Length(max=MAX_HEALTH_CHECKS)
    )
    resAlloc = fields.Nested(ResAllocRequest, allow_none=True, load_default=None)
    nodeQuery = Text(load_default="*", validate=[validate.Length(min=1, max=node_query.MAX_QUERY_LENGTH), _node_query])
    instances = fields.Integer(strict=True, load_default=1, validate=validate.Range(min=0, max=MAX_INSTANCES))
    unreachableSeconds = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=MAX_UNREACHABLE_SECONDS))
    backoffSeconds = fields.Float(load_default=APP_BACKOFF_SECONDS, validate=validate.Range(min=0, max=3600))
    backoffFactor = fields.Float(load_default=APP_BACKOFF_FACTOR, validate=validate.Range(min=1, max=100))
    maxLaunchDelaySeconds = fields.Float(
        load_default=APP_MAX_BACKOFF_SECONDS, validate=validate.Range(min=0, max=86400)
    )

    @validates_schema
    def _secret_names_apart(self, data: dict[str, Any], **kwargs: Any) -> None:
        clash = sorted(set(data.get("envs") or {}) & set(data.get("secretEnvs") or {}))
        if clash:
            raise ValidationError(f"names both in envs and secretEnvs: {', '.join(clash)}", "secretEnvs")

    @validates_schema
    def _ports_of_checks(self, data: dict[str, Any], **kwargs: Any) -> None:
        ports = data.get("ports") or []
        for i, check in enumerate(data.get("healthChecks") or []):
            if check.get("protocol") in (HealthCheckProtocol.HTTP.value, HealthCheckProtocol.TCP.value):
                if check.get("portIndex", 0) >= len(ports):
                    have = f"only {len(ports)} port{'' if len(ports) == 1 else 's'}" if ports else "no ports"
                    raise ValidationError(
                        {i: {"portIndex": [f"portIndex {check['portIndex']} is beyond ports ({have})"]}},
                        "healthChecks",
                    )


class ScaleRequest(_Strict):
    """Body of POST /api/apps/{name}/scale."""

    instances = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=MAX_INSTANCES))


class LogsQuery(_Strict):
    """Query string of GET /api/apps/{name}/instances/{id}/logs."""

    stream = Text(validate=validate.OneOf(["stdout", "stderr"]))
    tail = fields.Integer(load_default=100, validate=validate.Range(min=0, max=10_000))
    follow = fields.Boolean(load_default=False)


def load_app(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` validated as an app definition with every default filled; a 400 ApiError naming the field."""
    try:
        data: dict[str, Any] = AppRequest().load(body)
    except ValidationError as exc:
        raise _bad_request(exc) from exc
    return data


def load(schema: _Strict, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (a request body or query string) validated by ``schema``; a 400 ApiError naming the field."""
    try:
        data: dict[str, Any] = schema.load(body)
    except ValidationError as exc:
        raise _bad_request(exc) from exc
    return data
