"""The public JSON of the audit log (GET /api/audit)."""

from __future__ import annotations

import json
from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import AuditLog
from manager_api.services.paging import Page


def entry_json(row: AuditLog) -> dict[str, Any]:
    """One audit entry, its detail parsed back into JSON."""
    return {
        "at": iso(row.at),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "detail": json.loads(row.detail or "{}"),
    }


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    """A page of entries, newest first."""
    return page_json("entries", [entry_json(row) for row in page.rows], page.total, page_number, page_size)
