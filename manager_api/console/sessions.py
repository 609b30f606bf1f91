"""Web console sessions: server-side, in Redis, behind an HttpOnly, SameSite=Strict cookie.

The cookie holds only a random session id; Redis keeps what the session is (who signed in, its CSRF token)
under the id's SHA-256, and forgets it after SESSION_IDLE_SECONDS without a request or at sign-out. The API
token itself never leaves the sign-in form: no cookie, page or log carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from shared import keys

COOKIE = "corral_console"
"""Name of the session cookie."""

CSRF_FIELD = "csrf_token"
"""Form field that carries a form's CSRF token."""

CSRF_HEADER = "X-CSRF-Token"
"""Header that carries it on the console's own fetches (htmx sends it on every request, hx-headers)."""

SESSION_IDLE_SECONDS = 8 * 3600
"""A session unused this long is gone: signed out."""


@dataclass(frozen=True)
class Session:
    id: str
    actor: str
    csrf: str
    token_id: str = ""
    """The named API token signed in with (services/tokens.py), looked up on every page; "" for the manager's
    own API token (an admin) and for the open console."""


def _key(session_id: str) -> str:
    return keys.console_session(hashlib.sha256(session_id.encode()).hexdigest())


def open_session(redis: Redis, actor: str, token_id: str = "") -> Session:
    """A new session for ``actor`` (signed in with the named token ``token_id``, if any)."""
    session = Session(secrets.token_urlsafe(32), actor, secrets.token_urlsafe(32), token_id)
    key = _key(session.id)
    with redis.pipeline() as pipe:
        mapping = {"actor": actor, "csrf": session.csrf, "token_id": token_id, "created": f"{time.time():.3f}"}
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, SESSION_IDLE_SECONDS)
        pipe.execute()
    return session


def find(redis: Redis, session_id: str | None) -> Session | None:
    """The live session of ``session_id`` (its idle time starting over), or None."""
    if not session_id or len(session_id) > 128:
        return None
    key = _key(session_id)
    with redis.pipeline() as pipe:
        pipe.hmget(key, ["actor", "csrf", "token_id"])
        pipe.expire(key, SESSION_IDLE_SECONDS)
        (actor, csrf, token_id), _ = pipe.execute()
    if actor is None or csrf is None:
        return None
    return Session(session_id, actor.decode(), csrf.decode(), (token_id or b"").decode())


def close(redis: Redis, session_id: str) -> None:
    redis.delete(_key(session_id))


def csrf_ok(session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())
