"""Fleet tasks (document 004): a run form (command, targets, a node picker with a search box, timeout), a
task's page with its output appearing live per node and its results kept current, and the history with filters,
cancel and re-run. The same services and presenters as /api/tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import fleet_tasks as presenters
from manager_api.api.routes.tasks import STREAM_ID
from manager_api.api.schemas.manual import MAX_ID, FleetTaskSchema, TaskListQuerySchema
from manager_api.console import live
from manager_api.console.views import field_error, list_query, render
from manager_api.services.errors import Invalid, NotFound
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import output as task_output
from manager_api.services.fleet_tasks import reads as fleet_task_reads
from manager_api.services.nodes import documents
from manager_api.services.nodes import query as node_query
from manager_api.services.processors import outbox as processor_outbox
from shared.states import FleetTaskStatus

bp = Blueprint("tasks", __name__)

PAGE_SIZE = 25
"""Tasks per page of the history."""

FORM_FIELDS = ("name", "command", "targets", "timeout")
"""The run form's fields an error can be shown at (any other goes above the form)."""

STATE_EVERY = 1.0
"""Seconds between two looks at a running task's results while its output is followed."""


PICKER_SHOWN = 20
"""Nodes the picker lists for a search (besides those picked): a fleet of thousands is narrowed, not scrolled."""


def _picker(find: str, picked: list[str]) -> dict[str, Any]:
    """The node picker's context: the nodes picked so far (kept checked whatever the search), then the first
    PICKER_SHOWN others ``find`` matches, in the node query syntax of the nodes page and the targets box."""
    error = None
    try:
        wanted = node_query.parse(find) if find else None
    except Invalid as exc:
        wanted, error = None, exc.message
    offline_after = extensions.settings().offline_after_intervals
    found = [] if error else documents.matching(extensions.redis(), offline_after, wanted)
    chosen = set(picked)
    if chosen:
        everyone = found if wanted is None else documents.matching(extensions.redis(), offline_after, None)
        kept = [node for node in everyone if node["id"] in chosen]
    else:
        kept = []
    others = [node for node in found if node["id"] not in chosen]
    return {
        "find": find,
        "find_error": error,
        "picked": kept,
        "choices": others[:PICKER_SHOWN],
        "more": max(0, len(others) - PICKER_SHOWN),
    }


def _history_page(args: Mapping[str, str]) -> dict[str, Any]:
    """The history's context: a page of tasks filtered as GET /api/tasks filters them."""
    wanted = {key: args[key].strip() for key in ("status", "name", "page") if args.get(key, "").strip()}
    filters = {"status": wanted.get("status", ""), "name": wanted.get("name", "")}
    query, error = list_query(TaskListQuerySchema(), wanted, PAGE_SIZE)
    found = fleet_task_reads.listing(query["page"], PAGE_SIZE, query.get("status"), query.get("name"))
    page_json = presenters.listing_json(found, query["page"], PAGE_SIZE)
    pages = max(1, -(-found.total // PAGE_SIZE))
    return {
        "tasks": page_json["tasks"],
        "total": found.total,
        "page": query["page"],
        "pages": pages,
        "filters": filters,
        "filter_error": error,
        "statuses": [s.value for s in FleetTaskStatus],
    }


def _listing(
    status: int = 200, form: dict[str, Any] | None = None, errors: dict[str, str] | None = None
) -> ResponseReturnValue:
    form = form or {"name": "", "command": "", "targets": "", "timeout": "", "nodes": [], "find": ""}
    context = _history_page(request.args)
    picker = _picker(form.get("find", "").strip(), form["nodes"])
    return render("tasks.html", status, form=form, errors=errors or {}, picker=picker, **context)


@bp.get("/tasks")
def listing() -> ResponseReturnValue:
    return _listing()


@bp.get("/tasks/node-picker")
def node_picker() -> ResponseReturnValue:
    """The picker's list for what was typed in its search box (htmx swaps it in; the picked nodes come along)."""
    picker = _picker(request.args.get("find", "").strip()[: node_query.MAX_QUERY_LENGTH], request.args.getlist("node"))
    return render("_node_picker.html", 400 if picker["find_error"] else 200, picker=picker)


def _body(form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body POST /api/tasks would take for the run form: one target a line, then each picked node."""
    targets = [line.strip() for line in form["targets"].splitlines() if line.strip()]
    targets += [node for node in form["nodes"] if node not in targets]
    body: dict[str, Any] = {"name": form["name"], "command": form["command"], "targets": targets}
    timeout = form["timeout"].strip()
    if timeout:
        body["timeout"] = int(timeout) if timeout.isdigit() else timeout  # the schema says what is wrong
    return body


@bp.post("/tasks")
def run() -> ResponseReturnValue:
    form = {
        "name": request.form.get("name", ""),
        "command": request.form.get("command", ""),
        "targets": request.form.get("targets", ""),
        "timeout": request.form.get("timeout", ""),
        "nodes": request.form.getlist("node"),
        "find": request.form.get("find", ""),
    }
    try:
        data = FleetTaskSchema().load(_body(form))
        settings = extensions.settings()
        task_id = fleet_tasks.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    except ValidationError as exc:
        return _listing(400, form, field_error(exc.messages, FORM_FIELDS))
    except Invalid as exc:
        errors = field_error(exc.extra["errors"], FORM_FIELDS) if exc.extra.get("errors") else {"form": exc.message}
        return _listing(400, form, errors)
    return redirect(url_for("console.tasks.detail", task_id=task_id))


def _task(task_id: str) -> dict[str, Any]:
    if len(task_id) > MAX_ID:
        raise NotFound(fleet_task_reads.NOT_FOUND)
    task, hosts = fleet_task_reads.detail(task_id)
    return presenters.task_json(task, hosts, processor=processor_outbox.status(task))


def _over(task: Mapping[str, Any]) -> bool:
    found = fleet_task_reads.status_of(task["task_id"])
    return found is None or found[1]


@bp.get("/tasks/<task_id>")
def detail(task_id: str) -> ResponseReturnValue:
    task = _task(task_id)
    return render("task.html", task=task, over=_over(task))


@bp.post("/tasks/<task_id>/cancel")
def cancel(task_id: str) -> ResponseReturnValue:
    fleet_tasks.cancel(extensions.redis(), _task(task_id)["task_id"], auth.actor())
    return redirect(url_for("console.tasks.detail", task_id=task_id))


@bp.post("/tasks/<task_id>/rerun")
def rerun(task_id: str) -> ResponseReturnValue:
    """A new task with the same command, targets, timeout (and name, env): targets are resolved anew."""
    _task(task_id)
    data = FleetTaskSchema().load(fleet_task_reads.rerun_body(task_id))
    settings = extensions.settings()
    new_id = fleet_tasks.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    return redirect(url_for("console.tasks.detail", task_id=new_id))


# -- the live task page ----------------------------------------------------------------------------


def _parse(text: str) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """(id, event, data) of each event in SSE text from task_output.follow (keepalive comments skipped)."""
    for block in text.split("\n\n"):
        entry_id, event, data = None, "", ""
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name == "id":
                entry_id = value
            elif name == "event":
                event = value
            elif name == "data":
                data += value
        if event:
            yield entry_id, event, json.loads(data) if data else {}


def _output_events(task_id: str, after: str | None) -> Iterator[str]:
    """The task's output lines as HTML appended per node (``out-<node id>`` events), its results as ``state``
    (sent again when they change), and ``end`` once it is over and every line was sent."""
    yield f"retry: {live.RETRY_MS}\n\n"
    if after is None:
        # From the first line: the page empties what it shows first. Only the browser's own reconnects send
        # Last-Event-ID; after a refused or failed stream (a 503 while every slot is taken) htmx opens a new
        # EventSource, which sends none, and the lines already shown would otherwise appear twice.
        yield live.event("reset", "")
    ends = time.monotonic() + live.STREAM_SECONDS
    last_state: str | None = None
    next_state = 0.0
    lines = task_output.follow(extensions.redis(), task_id, after=after, keepalive_every=STATE_EVERY)
    try:
        for chunk in lines:
            by_node: dict[str, list[dict[str, Any]]] = {}
            last_id, over = None, False
            for entry_id, event, data in _parse(chunk):
                if event == "line":
                    by_node.setdefault(data["node_id"], []).append(data)
                    last_id = entry_id
                elif event == "end":
                    over = True
            out = [
                live.event(f"out-{node}", render_template("console/_task_lines.html", lines=rows))
                for node, rows in by_node.items()
            ]
            if out:
                out[-1] = f"id: {last_id}\n{out[-1]}" if last_id else out[-1]  # Last-Event-ID resumes after it
                yield "".join(out)
            if over or time.monotonic() >= next_state:
                next_state = time.monotonic() + STATE_EVERY
                html = render_template("console/_task_state.html", task=_task(task_id), over=over)
                if html != last_state:
                    last_state = html
                    yield live.event("state", html)
            if over:
                yield live.event("end", "")
                return
            if time.monotonic() >= ends:
                return  # the browser reconnects with Last-Event-ID
    finally:
        lines.close()  # type: ignore[attr-defined]


@bp.get("/console/live/tasks/<task_id>")
def follow(task_id: str) -> Response:
    _task(task_id)
    after = request.headers.get("Last-Event-ID", "").strip()
    return live.respond(lambda: _output_events(task_id, after if STREAM_ID.match(after) else None))
