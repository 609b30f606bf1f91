"""The audit log: who deployed, stopped, joined; which node went offline."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..models import AuditLog, utcnow
from .serialize import iso

logger = logging.getLogger(__name__)


def record(actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Append one audit entry (inside the caller's transaction when there is one)."""
    AuditLog.create(at=utcnow(), actor=actor, action=action, target=target, detail=json.dumps(detail or {}))


def recent(limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first."""
    rows = AuditLog.select().order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(limit)
    return [
        {
            "at": iso(row.at),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "detail": json.loads(row.detail or "{}"),
        }
        for row in rows
    ]
