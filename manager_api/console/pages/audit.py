"""The audit log, newest first, with filters: who (actor), what (action, target), when (since, until)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, request
from flask.typing import ResponseReturnValue

from manager_api.api.presenters import audit as presenters
from manager_api.console.views import render
from manager_api.services import audit

bp = Blueprint("audit", __name__)

PAGE_SIZE = 50


def _local_time(text: str, offset_minutes: int) -> datetime | None:
    """A ``datetime-local`` field's value (the browser's wall time) as UTC; ``offset_minutes`` is what the
    browser's getTimezoneOffset() said (console.js fills it in)."""
    if not text:
        return None
    try:
        wall = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (wall + timedelta(minutes=offset_minutes)).replace(tzinfo=UTC)


@bp.get("/audit")
def listing() -> ResponseReturnValue:
    args = request.args
    try:
        offset = max(-24 * 60, min(24 * 60, int(args.get("tz_offset", "0"))))
    except ValueError:
        offset = 0
    try:
        page = max(1, int(args.get("page", "1")))
    except ValueError:
        page = 1
    form = {key: args.get(key, "").strip()[:255] for key in ("actor", "action", "target", "since", "until")}
    found = audit.listing(
        page,
        PAGE_SIZE,
        actor=form["actor"] or None,
        action=form["action"] or None,
        target=form["target"] or None,
        since=_local_time(form["since"], offset),
        until=_local_time(form["until"], offset),
    )
    entries = [presenters.entry_json(row) for row in found.rows]
    pages = max(1, -(-found.total // PAGE_SIZE))
    return render("audit.html", entries=entries, total=found.total, page=page, pages=pages, form=form, tz=offset)
