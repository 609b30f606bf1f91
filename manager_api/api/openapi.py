"""The OpenAPI 3.1 document of the manager's API, generated from the app's routes (its url_map) and what each
view declares with ``@documented`` (api/route_docs.py), through apispec's marshmallow plugin: request bodies
and query strings are the schema classes the routes load them with."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import fields
from werkzeug.routing import Rule

from manager_api.api.errors import ErrorSchema
from manager_api.api.route_docs import JSON, LOOSE_ARRAY, LOOSE_OBJECT, RouteDoc, route_doc
from shared.api import is_api_path
from shared.defaults import MAX_BODY_BYTES

OPENAPI_VERSION = "3.1.0"
TITLE = "corral manager API"
ERROR = "Error"
"""The component name of the error answer's schema."""

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The API token (CORRAL_API_TOKEN / --api-token); every API path asks for it once one is set.",
    },
    "joinToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The join token agents present to POST /api/agent/join.",
    },
}
SECURITY_OF: dict[str, list[dict[str, list[str]]]] = {
    "api": [{"apiToken": []}],
    "join": [{"joinToken": []}],
    "none": [],  # no token: the liveness check and this document
}

ERROR_TEXT = {
    400: "Invalid request: malformed JSON, a missing, wrongly typed or unknown field or parameter (named)",
    401: "The token is missing or wrong",
    403: "Not permitted",
    404: "No such resource",
    409: "Conflicts with the current state (named in the error)",
    413: f"Request body over {MAX_BODY_BYTES} bytes by default (manager --max-body-bytes), 64 KiB on the join",
    429: "Over a rate limit (per token, the join per address): wait Retry-After seconds (api/rate_limits.py)",
    503: "Redis or the database is unavailable: try again later",
}

NOT_DOCUMENTED = frozenset({"docs.page", "docs.static"})
"""API-path endpoints that are not the API: the reference page itself and its files."""

_PARAMETER = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def openapi_path(rule: str) -> str:
    """``/api/apps/<name>`` as OpenAPI writes it: ``/api/apps/{name}``."""
    return _PARAMETER.sub(lambda found: "{" + found["name"] + "}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    parameters = []
    for found in _PARAMETER.finditer(rule):
        parameter: dict[str, Any] = {"in": "path", "name": found["name"], "required": True}
        parameter["schema"] = {"type": "string"}
        if found["converter"] == "path":
            parameter["description"] = "May hold '/' (sent as it is, not encoded)."
        parameters.append(parameter)
    return parameters


def documented_rules(app: Flask) -> Iterator[tuple[Rule, RouteDoc]]:
    """Every rule on an API path whose view declares its RouteDoc, in path order."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not is_api_path(rule.rule) or rule.endpoint in NOT_DOCUMENTED:
            continue
        doc = route_doc(app.view_functions[rule.endpoint])
        if doc is not None:
            yield rule, doc


def methods_of(rule: Rule) -> list[str]:
    """The methods a rule answers, as the document lists them (HEAD and OPTIONS are Flask's own)."""
    return sorted(m.lower() for m in (rule.methods or ()) if m not in ("HEAD", "OPTIONS"))


def common_errors(doc: RouteDoc, has_path_parameters: bool) -> set[int]:
    """What a route of this kind may answer besides its own errors."""
    errors = {413}  # every route refuses an oversized body (api/request_json.py)
    if doc.body is not None or doc.query is not None:
        errors.add(400)
    if doc.auth != "none":
        errors.update({401, 429})  # what takes a token is counted (api/rate_limits.py); the public paths are not
    if has_path_parameters:
        errors.add(404)
    if doc.store:
        errors.add(503)
    return errors


def error_response(status: int) -> str:
    """The name of the shared response component of an error status."""
    return f"Error{status}"


def _dict_sizes(_converter: Any, field: fields.Field, ret: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    # A Length on a Dict field bounds its entries: JSON Schema's maxProperties, where apispec writes maxLength
    # (which JSON Schema applies to strings only).
    if isinstance(field, fields.Dict):
        for length, size in (("minLength", "minProperties"), ("maxLength", "maxProperties")):
            if length in ret:
                ret[size] = ret.pop(length)
    return {}


def _answer_schema(doc: RouteDoc) -> Any:
    if doc.answer == LOOSE_OBJECT:
        return {"type": "object", "description": "No schema of its own: a JSON object."}
    if doc.answer == LOOSE_ARRAY:
        return {"type": "array", "items": {"type": "object"}, "description": "No schema of its own."}
    return {"type": "array", "items": doc.answer} if doc.many else doc.answer


def _responses(doc: RouteDoc, has_path_parameters: bool) -> dict[str, Any]:
    content = {}
    for media in doc.media:
        content[media] = {"schema": _answer_schema(doc)} if media == JSON else {"schema": {"type": "string"}}
    responses: dict[str, Any] = {}
    for status in (doc.status, *doc.extra_status):
        responses[str(status)] = {"description": "Created" if status == 201 else "OK", "content": content}
    for status in sorted(common_errors(doc, has_path_parameters) | set(doc.errors)):
        responses[str(status)] = error_response(status)
    return responses


def _operation(app: Flask, rule: Rule, doc: RouteDoc, operation_id: str) -> dict[str, Any]:
    view = app.view_functions[rule.endpoint]
    summary, _, description = (view.__doc__ or "").strip().partition("\n")
    parameters = _path_parameters(rule.rule)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [rule.endpoint.partition(".")[0]],
        "summary": summary.strip(),
        "responses": _responses(doc, bool(parameters)),
        "security": SECURITY_OF[doc.auth],
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if doc.query is not None:
        parameters.append({"in": "query", "schema": doc.query})
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": doc.body}}}
    return operation


def _version() -> str:
    try:
        return metadata.version("corral")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0"


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s API."""
    marshmallow = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE,
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[marshmallow],
        info={
            "description": 'Every error answers {"error": "..."}; validation errors add "errors": '
            "{field: [messages]}. Bodies are JSON whatever their content type says."
        },
    )
    marshmallow.converter.add_attribute_function(_dict_sizes)  # type: ignore[union-attr]
    for name, scheme in SECURITY_SCHEMES.items():
        spec.components.security_scheme(name, scheme)
    spec.components.schema(ERROR, schema=ErrorSchema)
    for status, text in ERROR_TEXT.items():
        spec.components.response(error_response(status), {"description": text, "content": {JSON: {"schema": ERROR}}})
    operations: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for rule, doc in documented_rules(app):
        path = operations.setdefault(openapi_path(rule.rule), {})
        for method in methods_of(rule):
            # One view may answer two paths (the manual's /deployments/<id> and /api/deployments/<id>).
            base = f"{rule.endpoint.replace('.', '_')}_{method}"
            seen[base] = seen.get(base, 0) + 1
            operation_id = base if seen[base] == 1 else f"{base}_{seen[base]}"
            path[method] = _operation(app, rule, doc, operation_id)
    for path_name, path_operations in operations.items():
        spec.path(path=path_name, operations=path_operations)
    document: dict[str, Any] = spec.to_dict()
    return document


_CACHE = "corral.openapi"


def document(app: Flask) -> dict[str, Any]:
    """``build(app)``, made once per app: its routes are fixed once it is created."""
    cached: dict[str, Any] | None = app.extensions.get(_CACHE)
    if cached is None:
        cached = app.extensions[_CACHE] = build(app)
    return cached
