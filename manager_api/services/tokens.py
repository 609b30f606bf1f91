"""Named API tokens (issue 15): create (the secret shown once), list, show, revoke, and authenticate one.

A token reads ``corral_<id>_<secret>``: the id finds the row, the secret is compared by its SHA-256 in constant
time. The secret is 32 random bytes, so a fast hash suffices (nothing to brute-force; a slow KDF would only
cost every request). The database never holds the secret, only its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from peewee import IntegrityError

from manager_api import db
from manager_api.models import ApiToken, utcnow
from manager_api.services import audit
from manager_api.services.access import ADMIN, OPERATOR, ROLES, Identity
from manager_api.services.errors import Conflict, Invalid, NotFound
from manager_api.services.nodes import query as node_query
from manager_api.services.paging import Page, page_of

logger = logging.getLogger(__name__)

PREFIX = "corral_"
"""Every named token starts so: a token is told from the bootstrap one, and secret scanners can spot it."""

TOUCH_SECONDS = 60.0
"""last_used_at is written at most this often per token and process: not a write per request."""

_touched: dict[str, float] = {}
_touching = threading.Lock()


class Refused(Exception):
    """A presented named token that does not authenticate; the message says why (401)."""


@dataclass(frozen=True)
class Created:
    token: ApiToken
    text: str  # the whole token, shown once


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_named(text: str) -> bool:
    return text.startswith(PREFIX)


def create(data: dict[str, Any], actor: str) -> Created:
    """A new token from the validated request (name, role, nodeQuery, commands, expiresAt)."""
    role = data["role"]
    if role not in ROLES:
        raise Invalid(f"Invalid request format: role: one of {', '.join(ROLES)}")
    query, commands = data.get("nodeQuery"), data.get("commands")
    if role != OPERATOR and (query is not None or commands is not None):
        raise Invalid("Invalid request format: nodeQuery, commands: only an operator token is scoped")
    if query is not None:
        node_query.parse(query, parameter="nodeQuery")  # 400 naming nodeQuery before anything is stored
    rate = data.get("rateLimit")  # checked by TokenSchema: a rate in limits' syntax
    token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    try:
        with db.write_transaction():
            row = ApiToken.create(
                id=token_id,
                name=data["name"],
                role=role,
                node_query=query,
                commands=None if commands is None else json.dumps(commands),
                secret_hash=digest(secret),
                created_at=utcnow(),
                created_by=actor,
                expires_at=data.get("expiresAt"),
                rate_limit=rate,
            )
            detail = {"name": row.name, "role": role, "nodeQuery": query, "commands": commands, "rateLimit": rate}
            audit.record(actor, "token.create", token_id, detail)
    except IntegrityError:
        raise Conflict(f"A token named {data['name']!r} exists already") from None
    logger.info("API token %s (%s, %s) created by %s", token_id, row.name, role, actor)
    return Created(row, f"{PREFIX}{token_id}_{secret}")


def get(token_id: str) -> ApiToken:
    token = ApiToken.get_or_none(ApiToken.id == token_id)
    if token is None:
        raise NotFound(f"Token {token_id} not found")
    return token


def listing(page: int, page_size: int) -> Page:
    total, rows = page_of(ApiToken.select(), page, page_size, ApiToken.created_at, ApiToken.id)
    return Page(total, rows, {})


def revoke(token_id: str, actor: str) -> ApiToken:
    """Revoke a token at once (its row stays, for the audit log); revoking a revoked one changes nothing."""
    with db.write_transaction():
        token = get(token_id)
        if token.revoked_at is None:
            token.revoked_at = utcnow()
            token.save(only=[ApiToken.revoked_at])
            audit.record(actor, "token.revoke", token_id, {"name": token.name})
    logger.info("API token %s (%s) revoked by %s", token_id, token.name, actor)
    return token


def expiry(expires_in: timedelta | None, expires_at: datetime | None) -> datetime | None:
    if expires_in is not None and expires_at is not None:
        raise Invalid("Invalid request format: expiresIn: give expiresIn or expiresAt, not both")
    return utcnow() + expires_in if expires_in is not None else expires_at


def authenticate(text: str) -> Identity:
    """The identity of a presented ``corral_<id>_<secret>``; Refused saying why it is no good."""
    token_id, _, secret = text[len(PREFIX) :].partition("_")
    row = ApiToken.get_or_none(ApiToken.id == token_id) if token_id and secret else None
    # Compared even for an unknown id, so the answer's time does not tell which ids exist.
    expected = row.secret_hash if row is not None else digest("")
    if not hmac.compare_digest(digest(secret), expected) or row is None:
        raise Refused("Invalid API token")
    return _live_identity(row)


def identity_of(token_id: str) -> Identity:
    """The identity of the token ``token_id`` as it is now (a console session signed in with it asks on every
    page, so a revoked or expired token ends the session at once); Refused saying why it is no good."""
    row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None:
        raise Refused(f"API token {token_id} no longer exists")
    return _live_identity(row)


def _live_identity(row: ApiToken) -> Identity:
    now = utcnow()
    if row.revoked_at is not None:
        raise Refused(f"API token {row.id} ({row.name}) was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Refused(f"API token {row.id} ({row.name}) expired at {row.expires_at.isoformat()}Z")
    _touch(row.id, now)
    commands = None if row.commands is None else tuple(json.loads(row.commands))
    return Identity(row.name, row.role, row.id, row.node_query, commands, row.rate_limit)


def _touch(token_id: str, now: datetime) -> None:
    moment = time.monotonic()
    with _touching:
        if moment - _touched.get(token_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        _touched[token_id] = moment
    with db.write_transaction():
        ApiToken.update(last_used_at=now).where(ApiToken.id == token_id).execute()


__all__ = ["ADMIN", "Created", "Refused", "authenticate", "create", "expiry", "get", "identity_of", "listing", "revoke"]
