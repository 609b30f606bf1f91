"""POST /api/agent/join: an agent announces itself (join token checked in auth)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.api import auth
from manager_api.api.request_json import load
from manager_api.api.route_docs import documented
from manager_api.services.nodes import join as agents
from shared.api import JOIN_PATH
from shared.messages import JoinRequestSchema, JoinResponseSchema

bp = Blueprint("agents", __name__)


@bp.post(JOIN_PATH)
@documented(body=JoinRequestSchema, answer=JoinResponseSchema, auth="join", errors=(403,))
def join() -> ResponseReturnValue:
    """Register or refresh the calling agent's node."""
    data = load(JoinRequestSchema())
    answer = agents.join(extensions.settings(), extensions.redis(), data, request.host, auth.actor())
    return jsonify(JoinResponseSchema().dump(answer))
