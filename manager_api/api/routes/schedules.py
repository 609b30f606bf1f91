"""Schedules (issue 3 item 6): /api/schedules create, list, detail, pause, resume, delete."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from redis import Redis

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.presenters import schedules as presenters
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers import schedules as answers
from manager_api.api.schemas.manual import ScheduleListQuerySchema, ScheduleSchema
from manager_api.services.schedules import actions as schedules
from manager_api.services.schedules import agent_sets

bp = Blueprint("schedules", __name__)


def _reach() -> tuple[Redis, int]:
    """What the services check an operator's node scope with."""
    return extensions.redis(), extensions.settings().offline_after_intervals


@bp.post("/api/schedules")
@documented(body=ScheduleSchema, answer=answers.ScheduleAnswer, status=201, errors=(409,))
def create() -> ResponseReturnValue:
    """Create a schedule; the cron runner (in the duties) picks it up within a tick."""
    data = load(ScheduleSchema())
    settings = extensions.settings()
    created = schedules.create(data, auth.actor(), extensions.redis(), settings.offline_after_intervals)
    return jsonify(presenters.schedule_json(created)), 201


@bp.get("/api/schedules")
@documented(query=ScheduleListQuerySchema, answer=answers.SchedulePageAnswer)
def listing() -> ResponseReturnValue:
    """A page of schedules, oldest first; 1000 by default, as it answered every schedule before it paged."""
    args = ScheduleListQuerySchema().load(request.args.to_dict())
    page = schedules.listing(args["page"], args["page_size"])
    return jsonify(presenters.listing_json(page, args["page"], args["page_size"]))


@bp.get("/api/schedules/<schedule_id>")
@documented(answer=answers.ScheduleDetailAnswer)
def detail(schedule_id: str) -> ResponseReturnValue:
    """A schedule with the ids of the fleet tasks it fired last; an on_agent one also with the version of the
    agents' sets and the version each of its nodes holds (from their heartbeats)."""
    found = schedules.detail(schedule_id)
    agents = None
    if found.schedule.on_agent:
        agents = (agent_sets.current_version(), agent_sets.held_versions(*_reach(), found.schedule))
    return jsonify(presenters.detail_json(found, agents))


@bp.post("/api/schedules/<schedule_id>/pause")
@documented(answer=answers.ScheduleAnswer)
def pause(schedule_id: str) -> ResponseReturnValue:
    """Stop firing until resumed (takes effect at once)."""
    return jsonify(presenters.schedule_json(schedules.set_paused(schedule_id, True, auth.actor(), *_reach())))


@bp.post("/api/schedules/<schedule_id>/resume")
@documented(answer=answers.ScheduleAnswer)
def resume(schedule_id: str) -> ResponseReturnValue:
    """Fire again from the next tick on."""
    return jsonify(presenters.schedule_json(schedules.set_paused(schedule_id, False, auth.actor(), *_reach())))


@bp.delete("/api/schedules/<schedule_id>")
@documented(answer=answers.ScheduleDeletedAnswer)
def delete(schedule_id: str) -> ResponseReturnValue:
    """Delete a schedule; the fleet tasks it fired stay."""
    schedules.delete(schedule_id, auth.actor(), *_reach())
    return jsonify({"id": schedule_id, "deleted": True})
