"""The overview: the fleet at a glance, kept current by a live stream."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from manager_api import extensions
from manager_api.console import live
from manager_api.console.views import render
from manager_api.services import overview

bp = Blueprint("overview", __name__)


def _summary() -> dict[str, Any]:
    settings = extensions.settings()
    return overview.summary(extensions.redis(), settings.offline_after_intervals)


@bp.get("/")
def page() -> ResponseReturnValue:
    return render("overview.html", summary=_summary())


@bp.get("/console/live/overview")
def stream() -> ResponseReturnValue:
    return live.stream({"overview": lambda: render_template("console/_overview.html", summary=_summary())})
