"""Schedules: fleet tasks fired by cron or every N seconds. The list, kept live, with each one's next and last
run (and the task it started last), a create form taking what POST /api/schedules takes, pause, resume and delete.
The same services and presenters as /api/schedules."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError
from redis import Redis

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import schedules as presenters
from manager_api.api.schemas.manual import ScheduleSchema
from manager_api.console import live
from manager_api.console.pages.scripts import param_value
from manager_api.console.views import field_error, render
from manager_api.services.errors import Conflict, Invalid
from manager_api.services.schedules import actions as schedules
from manager_api.services.schedules import agent_sets
from manager_api.services.scripts import running as script_runs

bp = Blueprint("schedules", __name__)

PAGE_SIZE = 100
"""Schedules per page."""

FORM_FIELDS = ("name", "command", "script", "params", "targets", "timeout", "cron", "interval", "on_agent")
"""The create form's fields an error can be shown at (any other goes above the form)."""

EMPTY_FORM = {
    "name": "",
    "command": "",
    "script": "",
    "params": "",
    "targets": "",
    "timeout": "",
    "trigger": "interval",
    "cron": "",
    "interval": "",
    "on_agent": "",
}


def _reach() -> tuple[Redis, int]:
    """What the services check an operator's node scope with, and push an on_agent schedule's change with (as
    the API passes them: without them an on_agent schedule would not reach its agents until the next rejoin)."""
    return extensions.redis(), extensions.settings().offline_after_intervals


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def _table(page: int) -> dict[str, Any]:
    """The table's context: a page of schedules with their next and last runs."""
    found = schedules.listing(page, PAGE_SIZE)
    rows = presenters.listing_json(found, page, PAGE_SIZE)["schedules"]
    return {"schedules": rows, "total": found.total, "page": page, "pages": max(1, -(-found.total // PAGE_SIZE))}


def _listing(
    status: int = 200, form: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> ResponseReturnValue:
    context = _table(_page_number())
    return render("schedules.html", status, form=form or dict(EMPTY_FORM), errors=errors or {}, **context)


@bp.get("/schedules")
def listing() -> ResponseReturnValue:
    return _listing()


@bp.get("/console/live/schedules")
def stream() -> ResponseReturnValue:
    """The table, sent again when a run happens, or when someone else creates, pauses or deletes a schedule."""
    page = _page_number()
    return live.stream({"schedules": lambda: render_template("console/_schedules_table.html", **_table(page))})


def _number(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.isdigit() else text  # not a number: the schema says so


def _params(ref: str, text: str) -> dict[str, Any]:
    """A script's ``name=value`` lines as its parameter values, each of its declared type (Invalid naming the
    script or the line otherwise; the params check then says what a value lacks)."""
    declared = {param["name"]: param["type"] for param in json.loads(script_runs.find(ref).params)}
    values: dict[str, Any] = {}
    for line in filter(None, (line.strip() for line in text.splitlines())):
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise Invalid(f"params: {line!r} is not name=value")
        values[name.strip()] = param_value(declared.get(name.strip(), "string"), value.strip())
    return values


def _body(form: dict[str, str]) -> dict[str, Any]:
    """The JSON body POST /api/schedules would take for the form: one target a line, cron or interval; a
    command, or a script (name@version) with its parameters, one ``name=value`` a line."""
    body: dict[str, Any] = {"name": form["name"]}
    if form["command"].strip() or not form["script"].strip():
        body["command"] = form["command"]
    if form["script"].strip():
        body["script"] = form["script"].strip()
        body["params"] = _params(body["script"], form["params"])
    body["targets"] = [line.strip() for line in form["targets"].splitlines() if line.strip()]
    if form["timeout"].strip():
        body["timeout"] = _number(form["timeout"])
    if form["on_agent"]:
        body["on_agent"] = True
    if form["trigger"] == "cron":
        body["cron"] = form["cron"]
    elif form["interval"].strip():
        body["interval"] = _number(form["interval"])
    return body


@bp.post("/schedules")
def create() -> ResponseReturnValue:
    form = {key: request.form.get(key, default) for key, default in EMPTY_FORM.items()}
    try:
        schedules.create(ScheduleSchema().load(_body(form)), auth.actor(), *_reach())
    except ValidationError as exc:
        return _listing(400, form, field_error(exc.messages, FORM_FIELDS))
    except (Invalid, Conflict) as exc:
        errors = field_error(exc.extra["errors"], FORM_FIELDS) if exc.extra.get("errors") else _at_field(exc.message)
        return _listing(400 if isinstance(exc, Invalid) else 409, form, errors)
    return redirect(url_for("console.schedules.listing"))


def _at_field(message: str) -> dict[str, str]:
    """A service's ``script: ...`` or ``params.who: ...`` shown at its field, any other message above the form."""
    field = message.split(":", 1)[0].split(".", 1)[0]
    return {field if field in ("script", "params") else "form": message}


@bp.post("/schedules/<schedule_id>/pause")
def pause(schedule_id: str) -> ResponseReturnValue:
    schedules.set_paused(schedule_id, True, auth.actor(), *_reach())
    return redirect(url_for("console.schedules.listing"))


@bp.post("/schedules/<schedule_id>/resume")
def resume(schedule_id: str) -> ResponseReturnValue:
    schedules.set_paused(schedule_id, False, auth.actor(), *_reach())
    return redirect(url_for("console.schedules.listing"))


@bp.post("/schedules/<schedule_id>/delete")
def delete(schedule_id: str) -> ResponseReturnValue:
    schedules.delete(schedule_id, auth.actor(), *_reach())
    return redirect(url_for("console.schedules.listing"))


@bp.get("/schedules/<schedule_id>")
def detail(schedule_id: str) -> ResponseReturnValue:
    """One schedule with its recent tasks; an on_agent one with the version of the agents' sets and what each of
    its nodes holds (as GET /api/schedules/<id>)."""
    found = schedules.detail(schedule_id)
    agents = None
    if found.schedule.on_agent:
        agents = (agent_sets.current_version(), agent_sets.held_versions(*_reach(), found.schedule))
    return render("schedule.html", schedule=presenters.detail_json(found, agents))
