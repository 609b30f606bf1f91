"""Scripts (issue 17): the registered versions, one version's page (its params, digest, a text body's content)
with a run form that starts a fleet task of it (params fields by declared type, secret ones as password inputs),
and deleting a version. The same services and presenters as /api/scripts and /api/tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, redirect, request, url_for
from flask.typing import ResponseReturnValue
from marshmallow import ValidationError

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import scripts as presenters
from manager_api.api.schemas.manual import FleetTaskSchema, ScriptListQuerySchema
from manager_api.console.views import field_error, list_query, render
from manager_api.services.errors import Invalid
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.scripts import registry

bp = Blueprint("scripts", __name__)

PAGE_SIZE = 50
"""Script versions per page."""

RUN_FIELDS = ("name", "targets", "timeout", "params")
"""The run form's fields an error can be shown at (any other goes above the form)."""

PARAM_PREFIX = "param-"
"""A parameter's form field: ``param-<name>`` (its name alone could clash with the form's own fields)."""


@bp.get("/scripts")
def listing() -> ResponseReturnValue:
    wanted = {key: request.args[key].strip() for key in ("name", "page") if request.args.get(key, "").strip()}
    query, error = list_query(ScriptListQuerySchema(), wanted, PAGE_SIZE)
    found = registry.listing(query["page"], PAGE_SIZE, query.get("name"))
    rows = presenters.listing_json(found, query["page"], PAGE_SIZE)["scripts"]
    return render(
        "scripts.html",
        scripts=rows,
        total=found.total,
        page=query["page"],
        pages=max(1, -(-found.total // PAGE_SIZE)),
        name=wanted.get("name", ""),
        filter_error=error,
    )


def param_value(kind: str, text: str) -> Any:
    """A form field's text as the JSON value of a ``kind`` parameter; text that is not one is passed as it is
    (the params check then says ``must be of type ...`` at the field)."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text
    if kind == "bool":
        return {"true": True, "false": False}.get(text, text)
    return text


def _body(script: Mapping[str, Any], form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body POST /api/tasks would take for the run form; an empty param field is left out (its default
    applies, or ``required`` is said)."""
    params = {
        p["name"]: param_value(p["type"], form["params"][p["name"]])
        for p in script["params"]
        if form["params"].get(p["name"], "") != ""
    }
    targets = [line.strip() for line in form["targets"].splitlines() if line.strip()]
    body: dict[str, Any] = {
        "name": form["name"] or script["name"],
        "script": f"{script['name']}@{script['version']}",
        "targets": targets,
        "params": params,
    }
    timeout = form["timeout"].strip()
    if timeout:
        body["timeout"] = int(timeout) if timeout.isdigit() else timeout
    return body


def _detail(
    name: str, version: str, status: int = 200, form: dict[str, Any] | None = None, errors: dict[str, str] | None = None
) -> ResponseReturnValue:
    script = presenters.script_json(registry.get(name, version), content=True)
    if form is None:
        form = {"name": "", "targets": "", "timeout": "", "params": {}}
    return render("script.html", status, script=script, form=form, errors=errors or {}, prefix=PARAM_PREFIX)


@bp.get("/scripts/<name>/<version>")
def detail(name: str, version: str) -> ResponseReturnValue:
    return _detail(name, version)


def _param_error(errors: dict[str, str]) -> dict[str, str]:
    """``params.x: ...`` shown at the field of parameter x."""
    message = errors.get("form", "")
    if message.startswith("params."):
        param = message.split(":", 1)[0].removeprefix("params.")
        return {f"{PARAM_PREFIX}{param}": message}
    return errors


@bp.post("/scripts/<name>/<version>/run")
def run(name: str, version: str) -> ResponseReturnValue:
    script = presenters.script_json(registry.get(name, version))
    form = {
        "name": request.form.get("name", "").strip(),
        "targets": request.form.get("targets", ""),
        "timeout": request.form.get("timeout", ""),
        "params": {p["name"]: request.form.get(PARAM_PREFIX + p["name"], "") for p in script["params"]},
    }
    try:
        data = FleetTaskSchema().load(_body(script, form))
        settings = extensions.settings()
        task_id = fleet_tasks.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    except ValidationError as exc:
        return _detail(name, version, 400, form, field_error(exc.messages, RUN_FIELDS))
    except Invalid as exc:
        errors = field_error(exc.extra["errors"], RUN_FIELDS) if exc.extra.get("errors") else {"form": exc.message}
        return _detail(name, version, 400, form, _param_error(errors))
    return redirect(url_for("console.tasks.detail", task_id=task_id))


@bp.post("/scripts/<name>/<version>/delete")
def delete(name: str, version: str) -> ResponseReturnValue:
    registry.delete(extensions.redis(), name, version, auth.actor())
    return redirect(url_for("console.scripts.listing"))
