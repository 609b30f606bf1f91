"""Answers of the tokens API (presenters.tokens): never a secret, apart from the one answer that creates it."""

from __future__ import annotations

from manager_api.api.schemas.answers.common import Answer, PageAnswer, many, one_of, strings, text, time
from manager_api.services.access import ROLES


class TokenAnswer(Answer):
    """A token as listed: its scope and lifecycle, not its secret (only a hash of it is kept)."""

    id = text()
    name = text()
    role = one_of(ROLES)
    nodeQuery = text(nullable=True, metadata={"description": "Operator: the nodes it may reach; null: all."})
    commands = strings(allow_none=True, metadata={"description": "Operator: command glob patterns; null: any."})
    state = one_of(("active", "expired", "revoked"))
    createdAt = time()
    createdBy = text()
    expiresAt = time(nullable=True)
    revokedAt = time(nullable=True)
    lastUsedAt = time(nullable=True, metadata={"description": "Updated at most once a minute."})
    rateLimit = text(nullable=True, metadata={"description": "Its own API rate (200/second...); null: the manager's."})


class TokenCreatedAnswer(TokenAnswer):
    token = text(metadata={"description": "The whole bearer token, corral_<id>_<secret>: shown this once."})


class TokenPageAnswer(PageAnswer):
    tokens = many(TokenAnswer)
