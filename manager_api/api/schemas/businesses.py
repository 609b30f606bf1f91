"""Marshmallow schemas of the businesses API (document 001 §3.1, §5): strict, bounded, checked before any write.

A failed check answers 400 naming the field the way a user wrote it, e.g.
``components[0].config_files[1].path: path '../x' climbs out of its root with '..'``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from manager_api.api.errors import INVALID_REQUEST, ApiError, stringify_keys
from manager_api.api.schemas.manual import MAX_NAME, PageQuerySchema, TrimmedString, _Strict
from shared.config_paths import (
    MAX_CONFIG_FILE_BYTES,
    MAX_CONFIG_FILES,
    SAFE_ID_PATTERN,
    config_relpath,
    is_safe_id,
)
from shared.messages import Text
from shared.states import BusinessState, ComponentType

MAX_COMPONENTS = 200
MAX_COMMAND = 65536
MAX_ARGS = 1024
MAX_ENV = 256
MAX_ENV_VALUE = 65536
MAX_URL = 2048
MAX_LABELS = 64
MAX_LABEL_TEXT = 255
IMAGE_URL_SCHEMES = ("http://", "https://", "sftp://")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
SAFE_ID_RULE = "must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"


def _first_repeat(keys: Iterable[str]) -> tuple[int, int] | None:
    """(index, index of its first use) of the first key that repeats an earlier one, or None."""
    seen: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            return i, seen[key]
        seen[key] = i
    return None


def _safe_id(value: str) -> None:
    if not is_safe_id(value):
        raise ValidationError(f"{value!r} {SAFE_ID_RULE}")


def _config_path(value: str) -> None:
    try:
        config_relpath(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


def _image_url(value: str) -> None:
    if not value.startswith(IMAGE_URL_SCHEMES):
        raise ValidationError("must start with http://, https:// or sftp://")


def _env_name(value: str) -> None:
    if not ENV_NAME.match(value):
        raise ValidationError(f"environment variable name {value!r} must be letters, digits, '_', '.', '-'")


SECRET_FIELD = "secret_environment_variables"
"""A component's secret env (services.businesses.specs.SECRET)."""


class ResourceRequirementsRequest(_Strict):
    """What a component reserves on its node."""

    cpu_cores = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=4096))
    memory_mb = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0, max=64 * 1024 * 1024))
    gpu = fields.Boolean(load_default=False)


class ConfigFileRequest(_Strict):
    """A file written for the component before it starts."""

    # Not Text: config_relpath refuses a NUL itself, in the words of every other path rule.
    path = fields.String(required=True, validate=_config_path)
    content = Text(required=True, validate=validate.Length(max=MAX_CONFIG_FILE_BYTES))


class AffinityRequest(_Strict):
    """Where a component may go."""

    require_gpu = fields.Boolean(load_default=False)
    node_labels = fields.Dict(
        keys=Text(validate=validate.Length(min=1, max=MAX_LABEL_TEXT)),
        values=Text(validate=validate.Length(min=1, max=MAX_LABEL_TEXT)),
        load_default=dict,
        validate=validate.Length(max=MAX_LABELS),
    )


class ComponentRequest(_Strict):
    """One component of a business (document 001 §3.1, plus what a process needs)."""

    component_id = Text(required=True, validate=_safe_id, metadata={"pattern": SAFE_ID_PATTERN})
    component_name = TrimmedString(validate=validate.Length(min=1, max=MAX_NAME))  # default: component_id
    type = Text(required=True, validate=validate.OneOf([t.value for t in ComponentType]))
    command = Text(load_default="", validate=validate.Length(max=MAX_COMMAND))
    args = fields.List(Text(), load_default=list, validate=validate.Length(max=MAX_ARGS))
    working_dir = Text(allow_none=True, load_default=None, validate=validate.Length(max=1024))
    image_url = Text(allow_none=True, load_default=None, validate=[validate.Length(max=MAX_URL), _image_url])
    image_name = Text(allow_none=True, load_default=None, validate=validate.Length(min=1, max=MAX_NAME))
    resource_requirements = fields.Nested(ResourceRequirementsRequest, load_default=lambda: {})
    environment_variables = fields.Dict(
        keys=Text(validate=_env_name),
        values=Text(validate=validate.Length(max=MAX_ENV_VALUE)),
        load_default=dict,
        validate=validate.Length(max=MAX_ENV),
    )
    # Encrypted at rest, sealed for the component's node, answered as names only (services.secret_store).
    # None when left out: an update without it keeps the stored ones.
    secret_environment_variables = fields.Dict(
        keys=Text(validate=_env_name),
        values=Text(validate=validate.Length(max=MAX_ENV_VALUE)),
        allow_none=True,
        load_default=None,
        validate=validate.Length(max=MAX_ENV),
    )
    config_files = fields.List(
        fields.Nested(ConfigFileRequest), load_default=list, validate=validate.Length(max=MAX_CONFIG_FILES)
    )
    affinity = fields.Nested(AffinityRequest, load_default=lambda: {})
    stop_grace_seconds = fields.Float(allow_none=True, load_default=None, validate=validate.Range(min=0, max=3600))

    @validates_schema
    def _secret_names_apart(self, data: dict[str, Any], **kwargs: Any) -> None:
        clash = sorted(set(data.get("environment_variables") or {}) & set(data.get(SECRET_FIELD) or {}))
        if clash:
            names = ", ".join(clash)
            raise ValidationError(f"names both in environment_variables and {SECRET_FIELD}: {names}", SECRET_FIELD)

    @validates_schema
    def _what_runs(self, data: dict[str, Any], **kwargs: Any) -> None:
        kind = data.get("type")
        if kind == ComponentType.PROCESS.value and not (data.get("command") or "").strip():
            raise ValidationError("a process component needs a command", "command")
        if kind == ComponentType.DOCKER.value and not data.get("image_name"):
            raise ValidationError("a docker component needs an image_name", "image_name")
        files = data.get("config_files") or []
        repeat = _first_repeat(str(config_relpath(item["path"])) for item in files)
        if repeat is not None:
            i, first = repeat
            raise ValidationError(
                {i: {"path": [f"path {files[i]['path']!r} is the same file as config_files[{first}]"]}},
                "config_files",
            )


class BusinessRequest(_Strict):
    """Body of POST /api/businesses and PUT /api/businesses/{id} (document 001 §3.1)."""

    business_id = Text(validate=_safe_id, metadata={"pattern": SAFE_ID_PATTERN})
    business_name = TrimmedString(required=True, validate=validate.Length(min=1, max=MAX_NAME))
    components = fields.List(
        fields.Nested(ComponentRequest),
        required=True,
        validate=validate.Length(min=1, max=MAX_COMPONENTS, error="Must hold between {min} and {max} components."),
    )
    rollback_on_failure = fields.Boolean(load_default=True)

    @validates_schema
    def _unique_components(self, data: dict[str, Any], **kwargs: Any) -> None:
        components = data.get("components") or []
        repeat = _first_repeat(component["component_id"] for component in components)
        if repeat is not None:
            i, first = repeat
            cid = components[i]["component_id"]
            raise ValidationError(
                {i: {"component_id": [f"component_id {cid!r} is already used by components[{first}]"]}}, "components"
            )


class BusinessListQuery(PageQuerySchema):
    """Query string of GET /api/businesses."""

    status = Text(validate=validate.OneOf([s.value for s in BusinessState]))
    name = Text(validate=validate.Length(max=MAX_NAME))


class DeployQuery(_Strict):
    """Query string of POST /api/businesses."""

    dry_run = fields.Boolean(load_default=False)


def field_path(messages: Any, path: str = "") -> tuple[str, str]:
    """The first error of a marshmallow tree as (``components[0].config_files[1].path``, message)."""
    if isinstance(messages, Mapping) and messages:
        key = next(iter(messages))
        if key == "_schema":
            sub = path
        elif isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            sub = f"{path}[{key}]"
        else:
            sub = f"{path}.{key}" if path else str(key)
        return field_path(messages[key], sub)
    if isinstance(messages, list) and messages:
        return field_path(messages[0], path)
    return path or "body", str(messages)


def _bad_request(exc: ValidationError) -> ApiError:
    """400 naming the first bad field the way the user wrote it, with every message under "errors"."""
    where, text = field_path(exc.messages)
    message = f"{INVALID_REQUEST}: {where}: {text}"
    return ApiError(400, message, {"status": "error", "message": message, "errors": stringify_keys(exc.messages)})


def load_business(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` validated as a business request, component names defaulted; a 400 ApiError otherwise."""
    try:
        data: dict[str, Any] = BusinessRequest().load(body)
    except ValidationError as exc:
        raise _bad_request(exc) from exc
    for component in data["components"]:
        component.setdefault("component_name", component["component_id"])
    return data


def load_query(schema: _Strict, args: Mapping[str, Any]) -> dict[str, Any]:
    """A query string validated by ``schema``; a 400 ApiError naming the parameter otherwise."""
    try:
        result: dict[str, Any] = schema.load(dict(args))
    except ValidationError as exc:
        raise _bad_request(exc) from exc
    return result
