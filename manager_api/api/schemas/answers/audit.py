"""Answer of GET /api/audit (presenters.audit)."""

from __future__ import annotations

from manager_api.api.schemas.answers.common import Answer, PageAnswer, any_object, many, text, time


class AuditEntryAnswer(Answer):
    at = time()
    actor = text()
    action = text(metadata={"example": "template.create"})
    target = text()
    detail = any_object(metadata={"description": "What the action did; its keys depend on the action."})


class AuditPageAnswer(PageAnswer):
    entries = many(AuditEntryAnswer, metadata={"description": "Newest first."})
