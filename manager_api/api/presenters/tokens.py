"""JSON of API tokens (schemas/answers/tokens.py): never the secret's hash."""

from __future__ import annotations

import json
from typing import Any

from manager_api.api.presenters.serialize import iso, page_json
from manager_api.models import ApiToken, utcnow
from manager_api.services.paging import Page


def state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    return "active"


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "nodeQuery": token.node_query,
        "commands": None if token.commands is None else json.loads(token.commands),
        "state": state(token),
        "createdAt": iso(token.created_at),
        "createdBy": token.created_by,
        "expiresAt": iso(token.expires_at),
        "revokedAt": iso(token.revoked_at),
        "lastUsedAt": iso(token.last_used_at),
        "rateLimit": token.rate_limit,
    }


def listing_json(page: Page, page_number: int, page_size: int) -> dict[str, Any]:
    return page_json("tokens", [token_json(row) for row in page.rows], page.total, page_number, page_size)
