"""Apps (document 003 §5.2): the list with their counts, an app created or edited as the JSON POST/PUT
/api/apps take, its actions (scale, rolling restart, stop, start, delete), its instances kept live, and an
instance's log followed live."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import INVALID_REQUEST, STATUS_OF, ApiError
from manager_api.api.presenters import apps as app_json
from manager_api.api.request_json import NOT_AN_OBJECT, object_of
from manager_api.api.schemas.apps import ScaleRequest, load, load_app
from manager_api.api.schemas.businesses import field_path
from manager_api.console import live
from manager_api.console.views import render
from manager_api.models import AppInstance
from manager_api.services.apps import actions as apps
from manager_api.services.apps import logs as app_logs
from manager_api.services.apps import reads as app_reads
from manager_api.services.apps.state import NOT_FOUND
from manager_api.services.errors import NotFound, ServiceError
from manager_api.stopping import STOPPING
from shared.config_paths import is_safe_id

bp = Blueprint("apps", __name__)

PAGE_SIZE = 50
"""Apps shown per page of the list."""
LOG_TAIL = 200
"""Lines of an instance's log shown when its page opens (then every new one)."""
INSTANCES_EVERY = 1.0
"""How often the instances of an app's page are looked at (a change is sent at once)."""
LOG_BLOCK_MS = 1000
"""How long one read of the log waits for new lines before the stream looks at the clock again."""

EXAMPLE = {
    "name": "web",
    "toProcess": "python3 -m http.server",
    "args": ["$PORT0", "--bind", "127.0.0.1"],
    "ports": [0],
    "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "initialDelaySeconds": 1, "intervalSeconds": 2}],
    "resAlloc": {"cpus": 0.1, "memMb": 64},
    "nodeQuery": "tags:web",
    "instances": 2,
}
"""What the new-app form starts with: the README's web.json."""


def _known(name: str) -> str:
    if not is_safe_id(name):
        raise NotFound(NOT_FOUND.format(name=name))
    return name


def _number(text: str | None, default: int = 1) -> int:
    try:
        return max(1, int(text or default))
    except ValueError:
        return default


def _spec_of(text: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The app definition typed into the form, validated as POST/PUT /api/apps validate a body: (spec, None,
    None), or (None, field path, message) naming where it is wrong (``healthChecks[0].protocol``, or the line
    and column of a JSON syntax error)."""
    try:
        body = object_of(text)
    except ApiError as exc:
        if exc.message == NOT_AN_OBJECT:
            try:
                json.loads(text)
            except json.JSONDecodeError as syntax:  # where it broke, which the API's answer does not say
                place = f"line {syntax.lineno} column {syntax.colno}"
                return None, "body", f"{INVALID_REQUEST}: JSON syntax error at {place}: {syntax.msg}"
        return None, "body", exc.message
    try:
        return load_app(body), None, None
    except ApiError as exc:
        errors = exc.extra.get("errors")
        field = field_path(errors)[0] if errors else "body"
        return None, field, exc.message


# --- the list ----------------------------------------------------------------------------------------------


@bp.get("/apps")
def listing() -> ResponseReturnValue:
    number = _number(request.args.get("page"))
    found = app_reads.listing(number, PAGE_SIZE)
    page = app_json.listing_json(found, number, PAGE_SIZE)
    pages = max(1, -(-found.total // PAGE_SIZE))
    return render("apps.html", apps=page["apps"], total=found.total, page=number, pages=pages)


# --- create and edit as JSON ---------------------------------------------------------------------------------


def _form(
    text: str, status: int = 200, name: str | None = None, field: str | None = None, error: str | None = None
) -> ResponseReturnValue:
    return render("app_form.html", status, text=text, name=name, field=field, error=error)


@bp.get("/apps/_new")
def new() -> ResponseReturnValue:
    return _form(json.dumps(EXAMPLE, indent=2))


@bp.post("/apps")
def create() -> ResponseReturnValue:
    text = request.form.get("definition", "")
    spec, field, error = _spec_of(text)
    if spec is None:
        return _form(text, 400, field=field, error=error)
    try:
        apps.create(extensions.redis(), spec, auth.actor(), extensions.settings())
    except ServiceError as exc:  # a name already taken: said at the form, the text kept
        return _form(text, STATUS_OF[type(exc)], field="name", error=exc.message)
    return redirect(url_for("console.apps.detail", name=spec["name"]))


@bp.get("/apps/<name>/edit")
def edit(name: str) -> ResponseReturnValue:
    app = app_reads.detail(_known(name))
    return _form(json.dumps(app["definition"], indent=2), name=name)


@bp.post("/apps/<name>/edit")
def update(name: str) -> ResponseReturnValue:
    name = _known(name)
    text = request.form.get("definition", "")
    spec, field, error = _spec_of(text)
    if spec is None:
        return _form(text, 400, name=name, field=field, error=error)
    try:
        apps.update(extensions.redis(), name, spec, auth.actor(), extensions.settings())
    except ServiceError as exc:
        return _form(text, STATUS_OF[type(exc)], name=name, field="body", error=exc.message)
    return redirect(url_for("console.apps.detail", name=name))


# --- one app: its page, its actions, its instances live ------------------------------------------------------


@bp.get("/apps/<name>")
def detail(name: str) -> ResponseReturnValue:
    return _detail(_known(name))


def _detail(name: str, status: int = 200, scale_error: str | None = None, scale_text: str | None = None) -> Any:
    app = app_reads.detail(name)
    if scale_text is None:
        scale_text = str(app["definition"]["instances"])
    return render("app.html", status, app=app, scale_error=scale_error, scale_text=scale_text)


@bp.post("/apps/<name>/scale")
def scale(name: str) -> ResponseReturnValue:
    name = _known(name)
    text = request.form.get("instances", "").strip()
    try:
        instances = load(ScaleRequest(), {"instances": int(text)})["instances"]
    except ValueError:
        return _detail(name, 400, f"{INVALID_REQUEST}: instances: Not a valid integer.", text)
    except ApiError as exc:
        return _detail(name, 400, exc.message, text)
    apps.scale(extensions.redis(), name, instances, auth.actor(), extensions.settings())
    return redirect(url_for("console.apps.detail", name=name))


@bp.post("/apps/<name>/restart")
def restart(name: str) -> ResponseReturnValue:
    name = _known(name)
    apps.restart(extensions.redis(), name, auth.actor(), extensions.settings())
    return redirect(url_for("console.apps.detail", name=name))


@bp.post("/apps/<name>/stop")
def stop(name: str) -> ResponseReturnValue:
    name = _known(name)
    apps.stop_app(extensions.redis(), name, auth.actor(), extensions.settings())
    return redirect(url_for("console.apps.detail", name=name))


@bp.post("/apps/<name>/start")
def start(name: str) -> ResponseReturnValue:
    name = _known(name)
    apps.start_app(extensions.redis(), name, auth.actor(), extensions.settings())
    return redirect(url_for("console.apps.detail", name=name))


@bp.post("/apps/<name>/delete")
def delete(name: str) -> ResponseReturnValue:
    apps.delete(extensions.redis(), _known(name), auth.actor())
    return redirect(url_for("console.apps.listing"))


def _instances_html(name: str) -> str:
    try:
        app = app_reads.detail(name)
    except NotFound as exc:
        return render_template("console/_app_instances.html", app=None, gone=exc.message)
    return render_template("console/_app_instances.html", app=app, gone=None)


@bp.get("/console/live/apps/<name>")
def instances_stream(name: str) -> ResponseReturnValue:
    name = _known(name)
    return live.stream({"instances": lambda: _instances_html(name)}, every=INSTANCES_EVERY)


# --- an instance's log -----------------------------------------------------------------------------------------


@bp.get("/apps/<name>/instances/<instance_id>/log")
def instance_log(name: str, instance_id: str) -> ResponseReturnValue:
    row = app_reads.instance(_known(name), instance_id)
    return render("instance_log.html", name=name, instance=row, tail=LOG_TAIL)


def _log_event(lines: list[dict[str, str]], cursor: str) -> str:
    """One ``line`` event: the lines as HTML to append to the <pre> (escaped; stderr marked), and the cursor as
    its id so that the browser's reconnect (Last-Event-ID) goes on where this stream ended."""
    # A CR would end the SSE data line early: it is dropped (a <pre> shows none anyway).
    shown = Markup('<span class="log-{0}">{1}</span>\n')
    html = "".join(
        str(shown.format(line["stream"] or "stdout", escape(line["line"].replace("\r", "")))) for line in lines
    )
    data = "".join(f"data: {part}\n" for part in html.split("\n"))  # split on \n only: the <pre> keeps the rest
    return f"id: {cursor}\nevent: line\n{data}\n"


def _log_events(row: AppInstance, after: str | None) -> Iterator[str]:
    redis = extensions.redis()
    yield f"retry: {live.RETRY_MS}\n\n"
    if after:
        cursor = after
    else:
        lines = app_logs.tail(redis, row, None, LOG_TAIL)
        cursor = app_logs.start_cursor(redis, row, lines)
        if lines:
            yield _log_event(lines, cursor)
    ends = time.monotonic() + live.STREAM_SECONDS
    while time.monotonic() < ends and not STOPPING.is_set():  # the browser comes back with Last-Event-ID
        lines, cursor = app_logs.newer(redis, row, None, cursor, LOG_BLOCK_MS)
        if lines:
            yield _log_event(lines, cursor)
        elif AppInstance.get_or_none(AppInstance.id == row.id) is None:
            yield "event: end\ndata: the instance is gone\n\n"
            return
        else:
            yield ": waiting\n\n"  # a page left is seen gone at the next write (see _instance_events)


@bp.get("/console/live/apps/<name>/instances/<instance_id>/log")
def log_stream(name: str, instance_id: str) -> ResponseReturnValue:
    """New lines of the instance's log as ``line`` events of HTML, after Last-Event-ID when the browser comes
    back (a stream lasts live.STREAM_SECONDS and holds one of live's slots, as every live stream does)."""
    row = app_reads.instance(_known(name), instance_id)
    after = request.headers.get("Last-Event-ID") or None
    if after is not None and not _entry_id(after):
        after = None
    return live.respond(lambda: _log_events(row, after))


def _entry_id(text: str) -> bool:
    """Whether ``text`` is a Redis stream entry id (``<ms>-<seq>``), as Last-Event-ID should be."""
    ms, _, seq = text.partition("-")
    return ms.isdigit() and seq.isdigit() and len(text) <= 41
