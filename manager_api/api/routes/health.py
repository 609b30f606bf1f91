"""GET /healthz."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from manager_api.api.route_docs import documented
from manager_api.api.schemas.answers.health import LivenessAnswer
from shared.api import HEALTH_PATH

bp = Blueprint("health", __name__)


@bp.get(HEALTH_PATH)
@documented(answer=LivenessAnswer, auth="none", store=False)
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})
