"""GET /healthz."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from shared.api import HEALTH_PATH

bp = Blueprint("health", __name__)


@bp.get(HEALTH_PATH)
def healthz() -> ResponseReturnValue:
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})
