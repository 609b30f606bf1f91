"""The web console (issue 13): the fleet in a browser, served by the manager itself at ``/``.

Server-rendered pages (one blueprint per resource under ``pages/``, Jinja templates under
``templates/console/``) over the same services and presenters as the JSON API, so a page shows nothing the
API would not; htmx (vendored under ``static/console/vendor/``, no build step) swaps fragments and follows
Server-Sent Events (``live.py``). Sign-in and CSRF: ``guard.py``, ``sessions.py``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from manager_api.console import guard, views
from manager_api.console.pages import ALL_PAGES

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style anywhere: what a page runs comes from static/console alone."""

console = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/console/static",
)
console.before_request(guard.check)
console.after_request(guard.set_cookie)
for page in ALL_PAGES:
    console.register_blueprint(page.bp)
views.install(console)


def _headers(response: Response) -> Response:
    if request.blueprint and request.blueprint.split(".")[0] == "console" or response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def register(app: Flask) -> None:
    """Serve the console on ``app`` (its pages, static files, HTML error pages off the API's paths)."""
    app.register_blueprint(console)
    app.after_request(_headers)
    views.install_error_pages(app)
