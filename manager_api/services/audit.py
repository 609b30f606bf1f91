"""The audit log: who deployed, stopped, joined; which node went offline."""

from __future__ import annotations

import json
import logging
from typing import Any

from manager_api.models import AuditLog, utcnow
from manager_api.services.paging import Page, page_of

logger = logging.getLogger(__name__)


def record(actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Append one audit entry (inside the caller's transaction when there is one)."""
    AuditLog.create(at=utcnow(), actor=actor, action=action, target=target, detail=json.dumps(detail or {}))


def listing(page: int, page_size: int) -> Page:
    """A page of entries, newest first (page 1 is the newest ``page_size``: what ``?limit=N`` always was)."""
    total, rows = page_of(AuditLog.select(), page, page_size, AuditLog.at.desc(), AuditLog.id.desc())
    return Page(total, rows, {})
