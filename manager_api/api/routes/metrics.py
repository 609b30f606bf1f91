"""GET /metrics: Prometheus text (the API token required when one is set: api/auth.py)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from manager_api import extensions
from manager_api.observability import exposition
from shared.api import METRICS_PATH

bp = Blueprint("metrics", __name__)


@bp.get(METRICS_PATH)
def metrics() -> Response:
    """Every process's counters and histograms, the fleet's state and the manager's processes, read now."""
    settings = extensions.settings()
    body = exposition.render(extensions.redis, lambda: settings.offline_after_intervals)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
