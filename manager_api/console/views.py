"""How console pages are drawn: the render helper, the filters templates use to show values (times, sizes),
and the error pages (an API failure shown in the page, never a stack trace)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import Markup
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

from manager_api.api.errors import STATUS_OF, first_error, http_error_json, validation_message
from manager_api.console import sessions
from manager_api.services import access
from manager_api.services.errors import ServiceError
from shared.api import is_api_path

logger = logging.getLogger(__name__)

NAV = (
    ("console.overview.page", "Overview"),
    ("console.nodes.listing", "Nodes"),
    ("console.apps.listing", "Apps"),
    ("console.businesses.listing", "Businesses"),
    ("console.manual.listing", "Deployments"),
    ("console.tasks.listing", "Tasks"),
    ("console.scripts.listing", "Scripts"),
    ("console.workflows.listing", "Workflows"),
    ("console.schedules.listing", "Schedules"),
    ("console.audit.listing", "Audit"),
    ("console.tokens.listing", "Tokens"),
)
"""The navigation bar: (endpoint, label); a page of a section not yet built is left out."""


def is_htmx() -> bool:
    """Whether htmx asked (it wants the fragment, not the page around it)."""
    return request.headers.get("HX-Request") == "true"


def render(template: str, code: int = 200, **context: Any) -> tuple[str, int]:
    """A console template with ``context``, answered with status ``code``."""
    return render_template(f"console/{template}", **context), code


def field_error(messages: Any, fields: Iterable[str]) -> dict[str, str]:
    """A marshmallow error tree as {form field: message}, the field being the first part of the error's path
    (``targets.3`` is shown at ``targets``); a path of no field of the form is shown above it ("form")."""
    path, message = first_error(messages)
    field = path.split(".", 1)[0]
    return {field if field in fields else "form": message}


def list_query(schema: Schema, raw: Mapping[str, str], page_size: int) -> tuple[dict[str, Any], str | None]:
    """A list page's query string loaded with the API's own schema; when it is wrong, page 1 unfiltered and
    what is wrong (shown above the table)."""
    try:
        return schema.load({**raw, "page_size": page_size}), None
    except ValidationError as exc:
        field, text = first_error(exc.messages)
        return {"page": 1, "page_size": page_size}, f"{field}: {text}"


def _when(value: Any) -> Markup:
    """A time as ``<time>``: UTC in the page, turned into the browser's own zone by console.js."""
    if value is None or value == "":
        return Markup("-")
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        iso = value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    else:
        iso = str(value)
    return Markup('<time datetime="{0}">{1}</time>').format(iso, iso.replace("T", " ").replace("Z", " UTC"))


def _mb(value: Any) -> str:
    try:
        mb = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _context() -> dict[str, Any]:
    session = g.get("console_session")
    endpoints = current_app.view_functions  # looked up, not copied: every fragment of a live page renders this
    return {
        "csrf_token": session.csrf if session is not None else "",
        "csrf_field": sessions.CSRF_FIELD,
        "signed_in": session is not None,
        "actor": session.actor if session is not None else None,
        "nav": [(endpoint, label) for endpoint, label in NAV if endpoint in endpoints and _may_open(endpoint)],
        "page_exists": endpoints.__contains__,
    }


def _may_open(endpoint: str) -> bool:
    """Whether the signed-in user's role opens a section (a named token's; the API token's is an admin)."""
    identity = g.get("identity")
    return identity is None or not endpoint.startswith("console.tokens.") or identity.has(access.ADMIN)


def _problem(status: int, message: str) -> ResponseReturnValue:
    if is_htmx():
        return render("_error.html", status, message=message)
    return render("error.html", status, status=status, message=message)


def install(console: Blueprint) -> None:
    console.app_template_filter("when")(_when)
    console.app_template_filter("mb")(_mb)
    console.app_context_processor(_context)  # error pages of unmatched paths too

    @console.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> ResponseReturnValue:
        return _problem(STATUS_OF[type(exc)], exc.message)

    @console.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> ResponseReturnValue:
        return _problem(400, validation_message(exc))


def install_error_pages(app: Flask) -> None:
    """HTTP failures off the API's paths (no such page, a CSRF refusal) as pages; the API's stay JSON."""

    def page(exc: HTTPException) -> ResponseReturnValue:
        if is_api_path(request.path):
            return http_error_json(exc)
        status = exc.code or 500
        if status == 404:
            message = f"There is no page at {request.path}."
        else:
            message = exc.description or exc.name
        return _problem(status, message)

    app.register_error_handler(HTTPException, page)
