"""The audit log: who deployed, stopped, joined; which node went offline."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from manager_api import db
from manager_api.models import AuditLog, utcnow
from manager_api.services.paging import Page, page_of

logger = logging.getLogger(__name__)

FILTERS = ("actor", "action", "target", "since", "until")
"""The keyword filters of listing(), as the API's query string and the console's form name them."""


def record(actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Append one audit entry (inside the caller's transaction when there is one)."""
    record_all(actor, [(action, target, detail)])


def record_all(actor: str, entries: Sequence[tuple[str, str, dict[str, Any] | None]]) -> None:
    """Append an entry per (action, target, detail) of ``actor``, in that order, at one time, in one statement
    (inside the caller's transaction when there is one): a task made and started is two entries."""
    now = utcnow()
    db.insert_rows(
        AuditLog,
        [
            {"at": now, "actor": actor, "action": action, "target": target, "detail": json.dumps(detail or {})}
            for action, target, detail in entries
        ],
    )


def listing(
    page: int,
    page_size: int,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    """A page of entries, newest first (page 1 is the newest ``page_size``: what ``?limit=N`` always was);
    ``actor``, ``action`` and ``target`` keep entries whose field contains them, ``since`` and ``until`` bound
    their time (naive times are UTC)."""
    query = AuditLog.select()
    for field, text in ((AuditLog.actor, actor), (AuditLog.action, action), (AuditLog.target, target)):
        if text:
            query = query.where(field.contains(text))
    if since is not None:
        query = query.where(AuditLog.at >= _utc(since))
    if until is not None:
        query = query.where(AuditLog.at <= _utc(until))
    total, rows = page_of(query, page, page_size, AuditLog.at.desc(), AuditLog.id.desc())
    return Page(total, rows, {})


def _utc(moment: datetime) -> datetime:
    # The database keeps naive UTC times (models.utcnow).
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
