"""GET /api/openapi.json (the API's OpenAPI 3.1 document, generated: api/openapi.py) and GET /api/docs (that
document rendered by a vendored Swagger UI). Both are readable without a token: they describe the API and hold
no data of the fleet."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from manager_api.api import openapi
from manager_api.api.route_docs import documented
from shared.api import DOCS_PATH, OPENAPI_PATH

DOCS_UI = Path(__file__).resolve().parent.parent / "docs_ui"
"""The page's template, its script and style, and the vendored Swagger UI (vendor/, with its LICENSES.txt)."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style: the page runs docs_ui/docs.js and the vendored bundle, nothing else."""

bp = Blueprint(
    "docs",
    __name__,
    static_folder=DOCS_UI,
    static_url_path=f"{DOCS_PATH}/static",
    template_folder=DOCS_UI,
)


@bp.get(OPENAPI_PATH, endpoint="openapi")
@documented(auth="none", store=False)
def openapi_document() -> ResponseReturnValue:
    """This document: every route of the API, generated from the schemas the routes use."""
    return jsonify(openapi.document(current_app))


@bp.get(DOCS_PATH)
def page() -> ResponseReturnValue:
    """The API reference, rendered in the browser from /api/openapi.json."""
    response = current_app.make_response(render_template("api_docs.html"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
