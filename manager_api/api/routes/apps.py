"""Apps (document 003 §5.2): create, list, show, update (rolling), scale, restart, stop, start, delete, logs."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import apps as app_json
from manager_api.api.request_json import json_object
from manager_api.api.route_docs import JSON, SSE, documented
from manager_api.api.schemas.answers import apps as answers
from manager_api.api.schemas.apps import AppRequest, LogsQuery, ScaleRequest, load, load_app
from manager_api.api.schemas.manual import PageQuerySchema
from manager_api.services.apps import actions as apps
from manager_api.services.apps import logs as app_logs
from manager_api.services.apps import reads as app_reads
from manager_api.services.apps.state import NOT_FOUND
from manager_api.services.errors import NotFound
from shared.config_paths import is_safe_id

bp = Blueprint("apps", __name__)


def _known(name: str) -> str:
    if not is_safe_id(name):
        raise NotFound(NOT_FOUND.format(name=name))
    return name


@bp.post("/api/apps")
@documented(body=AppRequest, answer=answers.AppAnswer, status=201, errors=(409,))
def create() -> ResponseReturnValue:
    """Create an app and place its instances; 201 with the app as GET shows it."""
    spec = load_app(json_object())
    return jsonify(apps.create(extensions.redis(), spec, auth.actor(), extensions.settings())), 201


@bp.get("/api/apps")
@documented(query=PageQuerySchema, answer=answers.AppPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of apps by name."""
    args = load(PageQuerySchema(), request.args.to_dict())
    page = app_reads.listing(args["page"], args["page_size"])
    return jsonify(app_json.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/apps/<name>")
@documented(answer=answers.AppAnswer)
def detail(name: str) -> ResponseReturnValue:
    """The definition, its deployment progress, why it is short if it is, and every instance."""
    return jsonify(app_reads.detail(_known(name)))


@bp.put("/api/apps/<name>")
@documented(body=AppRequest, answer=answers.AppAnswer, errors=(409,))
def update(name: str) -> ResponseReturnValue:
    """A new definition; instances are replaced one at a time when what runs changed, none when nothing did."""
    name = _known(name)
    spec = load_app(json_object())
    return jsonify(apps.update(extensions.redis(), name, spec, auth.actor(), extensions.settings()))


@bp.post("/api/apps/<name>/scale")
@documented(body=ScaleRequest, answer=answers.AppAnswer, errors=(409,))
def scale(name: str) -> ResponseReturnValue:
    """``{"instances": N}``."""
    name = _known(name)
    instances = load(ScaleRequest(), json_object())["instances"]
    return jsonify(apps.scale(extensions.redis(), name, instances, auth.actor(), extensions.settings()))


@bp.post("/api/apps/<name>/restart")
@documented(answer=answers.AppAnswer, errors=(409,))
def restart(name: str) -> ResponseReturnValue:
    """Replace every instance, one at a time."""
    return jsonify(apps.restart(extensions.redis(), _known(name), auth.actor(), extensions.settings()))


@bp.post("/api/apps/<name>/stop")
@documented(answer=answers.AppAnswer, errors=(409,))
def stop(name: str) -> ResponseReturnValue:
    """Stop every instance; the definition is kept."""
    return jsonify(apps.stop_app(extensions.redis(), _known(name), auth.actor(), extensions.settings()))


@bp.post("/api/apps/<name>/start")
@documented(answer=answers.AppAnswer, errors=(409,))
def start(name: str) -> ResponseReturnValue:
    """Run the app's instances again."""
    return jsonify(apps.start_app(extensions.redis(), _known(name), auth.actor(), extensions.settings()))


@bp.delete("/api/apps/<name>")
@documented(answer=answers.AppDeletedAnswer, errors=(409,))
def delete(name: str) -> ResponseReturnValue:
    """Delete the app; its instances are stopped."""
    settings = extensions.settings()
    return jsonify(apps.delete(extensions.redis(), _known(name), auth.actor(), settings.offline_after_intervals))


@bp.get("/api/apps/<name>/instances/<instance_id>/logs")
@documented(query=LogsQuery, answer=answers.AppLogsAnswer, media=(JSON, SSE))
def logs(name: str, instance_id: str) -> ResponseReturnValue:
    """The last ``tail`` lines (``stream`` stdout or stderr, both by default); ``follow=1``: then live, as SSE."""
    args = load(LogsQuery(), request.args.to_dict())
    row = app_reads.instance(_known(name), instance_id)
    stream, tail = args.get("stream"), args["tail"]
    if not args["follow"]:
        return jsonify(app_json.logs_json(name, row.id, app_logs.tail(extensions.redis(), row, stream, tail)))
    return Response(
        stream_with_context(app_logs.follow(extensions.redis(), row, stream, tail)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
