"""Fleet tasks (document 004): /api/tasks create, list, detail, start, cancel, live output."""

from __future__ import annotations

import re
import time

from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.errors import ApiError
from manager_api.api.presenters import fleet_tasks as fleet_task_json
from manager_api.api.request_json import load
from manager_api.api.route_docs import SSE, documented
from manager_api.api.schemas.answers import fleet_tasks as answers
from manager_api.api.schemas.manual import (
    MAX_ID,
    FleetTaskSchema,
    TaskListQuerySchema,
    TaskOutputQuerySchema,
    WaitQuerySchema,
)
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import output as task_output
from manager_api.services.fleet_tasks import reads as fleet_task_reads
from manager_api.services.processors import outbox as processor_outbox
from shared.messages import schema_of

bp = Blueprint("tasks", __name__)

STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
"""A Redis stream id, as a reconnecting SSE client sends it back in Last-Event-ID."""


def _wait_seconds() -> float:
    """``?wait=N`` (0..300), read before anything is done so a bad value changes nothing."""
    seconds: float = schema_of(WaitQuerySchema).load(request.args.to_dict())["wait"]
    return seconds


def _known(task_id: str) -> str:
    if len(task_id) > MAX_ID:
        raise ApiError(404, fleet_task_reads.NOT_FOUND)
    return task_id


def _answer(task_id: str, wait: float, status: int = 200) -> ResponseReturnValue:
    deadline = time.monotonic() + wait
    ended = fleet_task_reads.wait(extensions.redis(), task_id, wait) if wait > 0 else None
    if ended is not None:  # the row the wait read last: only its hosts are left to read
        if ended.processor:  # the synchronous mode answers with the summary's delivery too (within the wait)
            processor_outbox.wait_summary(extensions.redis(), ended, deadline - time.monotonic())
        hosts = fleet_task_reads.hosts_of(ended.id)
        return jsonify(fleet_task_json.task_json(ended, hosts, processor=processor_outbox.status(ended))), status
    task, hosts = fleet_task_reads.detail(task_id)
    return jsonify(fleet_task_json.task_json(task, hosts, processor=processor_outbox.status(task))), status


@bp.post("/api/tasks")
@documented(query=WaitQuerySchema, body=FleetTaskSchema, answer=answers.FleetTaskAnswer, status=201)
def create() -> ResponseReturnValue:
    """Create a task, start it unless ``start`` is false; ``?wait=N`` answers with the results."""
    wait = _wait_seconds()
    data = load(schema_of(FleetTaskSchema))
    settings = extensions.settings()
    task_id = fleet_tasks.create(extensions.redis(), data, auth.actor(), settings.offline_after_intervals)
    return _answer(task_id, wait, 201)


@bp.get("/api/tasks")
@documented(query=TaskListQuerySchema, answer=answers.FleetTaskPageAnswer)
def listing() -> ResponseReturnValue:
    """A page of tasks, newest first, filtered by status and name (``size`` is page_size's older name)."""
    args = schema_of(TaskListQuerySchema).load(request.args.to_dict())
    page = fleet_task_reads.listing(args["page"], args["page_size"], args.get("status"), args.get("name"))
    return jsonify(fleet_task_json.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/tasks/<task_id>")
@documented(query=WaitQuerySchema, answer=answers.FleetTaskAnswer)
def detail(task_id: str) -> ResponseReturnValue:
    """A task with every host's result; ``?wait=N`` first waits for it to end."""
    wait = _wait_seconds()
    fleet_task_reads.get(_known(task_id))
    return _answer(task_id, wait)


@bp.post("/api/tasks/<task_id>/start")
@documented(query=WaitQuerySchema, answer=answers.FleetTaskAnswer, errors=(409,))
def start_task(task_id: str) -> ResponseReturnValue:
    """Start a pending task (409 otherwise)."""
    wait = _wait_seconds()
    settings = extensions.settings()
    fleet_tasks.start(extensions.redis(), _known(task_id), auth.actor(), settings.offline_after_intervals)
    return _answer(task_id, wait)


@bp.post("/api/tasks/<task_id>/cancel")
@documented(answer=answers.FleetTaskAnswer, errors=(409,))
def cancel(task_id: str) -> ResponseReturnValue:
    """Cancel a task that has not ended (409 otherwise)."""
    settings = extensions.settings()
    fleet_tasks.cancel(extensions.redis(), _known(task_id), auth.actor(), settings.offline_after_intervals)
    return _answer(task_id, 0)


@bp.get("/api/tasks/<task_id>/output")
@documented(query=TaskOutputQuerySchema, media=(SSE,))
def output(task_id: str) -> Response:
    """Server-Sent Events: every output line from the first, live, then ``end`` once the task is over."""
    args = schema_of(TaskOutputQuerySchema).load(request.args.to_dict())
    fleet_task_reads.get(_known(task_id))
    after = request.headers.get("Last-Event-ID", "").strip()
    sse_text = task_output.follow(
        extensions.redis(), task_id, node=args.get("node"), after=after if STREAM_ID.match(after) else None
    )
    return Response(
        stream_with_context(sse_text),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
