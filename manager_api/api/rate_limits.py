"""Rate limits on the API, so that one misbehaving client cannot starve the others (issue 15).

Flask-Limiter counts, with its Redis storage on the manager's own Redis: every gunicorn worker and every manager
host share one count per client. Two limits:

- the API (every /api/ and /deployments/ path and /metrics but the join): ``--rate-limit`` per bearer token, or
  per client address for a request without one (rate_key);
- the agent join: ``--join-rate-limit`` per client address (the join token is the whole fleet's, so counting
  per token would make every agent wait for every other).

``/healthz``, the API's description (/api/openapi.json, /api/docs and its files: what answers without a token)
and the web console's pages and files are never counted. A long call (``?wait=``, a live stream) is one request, counted
once when it starts. A request over a limit is answered 429 ``{"error": "rate limit exceeded: ..."}`` with
``Retry-After`` (whole seconds, at least 1) and ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (GitHub's
names; Reset is a Unix time); answers under a limit carry the X-RateLimit headers too.

The fixed-window strategy: one INCR per request on one key per client and second, the cheapest Redis work of the
strategies, and the Retry-After it gives is exact. The hit answers the window's count and expiry with it
(rate_limit_storage.py), so a request costs one Redis round trip, headers included. Its known cost is a burst of
up to twice the limit across a window's edge, which for one-second windows is a few hundred requests: accepted.

Redis unreachable: each worker logs one warning and counts in its own memory (the same limits, per worker)
until Redis answers again (checked with a growing back-off, then one "recovered" line): an availability choice,
so that a Redis restart never turns the API into 429s or 500s.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

from flask import Flask, Response, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many

from manager_api.api.auth import presented_token
from manager_api.api.rate_limit_storage import WindowFromHitStorage, storage_uri
from manager_api.config import Settings
from shared import tls
from shared.api import JOIN_PATH, METRICS_PATH, is_api_path, is_public_path

logger = logging.getLogger(__name__)

OFF = "off"
"""The value of --rate-limit / --join-rate-limit that turns that limit off."""
STRATEGY = "fixed-window"
STORAGE_PREFIX = "corral:ratelimit"
"""Prefix of the limiter's Redis keys (the limits library adds its own after it)."""
JOIN_SCOPE = "join"
API_SCOPE = "api"
LOG_EVERY_SECONDS = 60.0
"""A client over its limit is logged once per this many seconds per worker, not once per refused request."""
_RETRY_AFTER = "corral_retry_after"
"""Where the 429 handler leaves its Retry-After for _set_retry_after (flask.g)."""

_last_logged: dict[str, float] = {}


def parsed_rate(value: str) -> list[RateLimitItem]:
    """The rates of ``value`` in limits' syntax (``200/second``, ``10 per minute``); [] when it is none."""
    try:
        return list(parse_many(value))
    except ValueError:
        return []


def check_limit(value: str, flag: str) -> str | None:
    """What is wrong with a --rate-limit value (``200/second``, ``10 per minute``, ``off``), or None."""
    if value.strip().lower() == OFF:
        return None
    if not parsed_rate(value):
        return f"{flag}: '{value}' is not a rate (say 200/second, 1000 per minute, or off)"
    return None


def rate_key() -> str:
    """Who an API request is counted against: its bearer token (a prefix of its SHA-256, never the token), else
    its address. Requests refused by auth are not counted: the limiter runs after it."""
    identity = g.get("identity")
    if identity is not None and identity.token_id:
        return "token:" + identity.token_id  # a named token (services/tokens.py): its public id
    token = presented_token()  # the bootstrap --api-token, or any bearer on an open API
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return address_key()


def address_key() -> str:
    return f"addr:{request.remote_addr or 'unknown'}"


def _not_counted() -> bool:
    path = request.path
    if is_public_path(path):
        return True  # liveness and the API's description (its document, page and browser files): no token
    return not (is_api_path(path) or path == METRICS_PATH)  # the web console's pages and files


def _api_rate(default: str) -> Callable[[], str]:
    """The API rate of the request: its named token's own (``rateLimit``, issue 15), else ``--rate-limit``'s."""

    def rate() -> str:
        identity = g.get("identity")
        own = identity.rate_limit if identity is not None else None
        return own or default

    return rate


def _is_join() -> bool:
    return request.path == JOIN_PATH


def _is_not_join() -> bool:
    return request.path != JOIN_PATH


def _limits(settings: Settings) -> list[ApplicationLimit]:
    limits = []
    if settings.rate_limit.strip().lower() != OFF:
        limits.append(
            ApplicationLimit(
                _api_rate(settings.rate_limit), key_function=rate_key, scope=API_SCOPE, exempt_when=_is_join
            )
        )
    if settings.join_rate_limit.strip().lower() != OFF:
        limits.append(
            ApplicationLimit(
                settings.join_rate_limit, key_function=address_key, scope=JOIN_SCOPE, exempt_when=_is_not_join
            )
        )
    return limits


def init_app(app: Flask, settings: Settings) -> Limiter | None:
    """Count requests on ``app`` against ``settings``' limits (none when both are off); after auth's check."""
    limits = _limits(settings)
    if not limits:
        return None
    app.after_request(_set_retry_after)  # before the limiter's own: runs after it, so it has the last word
    limiter = Limiter(
        rate_key,
        app=app,
        application_limits=limits,  # type: ignore[arg-type]  # a list is invariant: it wants the union's list
        strategy=STRATEGY,
        # limits' RedisStorage, but the headers' count and expiry come with the hit (one round trip, not three).
        storage_uri=storage_uri(settings.redis_url) if settings.redis_url else None,
        # Short timeouts: a Redis that hangs must not hold a request long before the in-memory fallback.
        storage_options={
            "socket_timeout": 1,
            "socket_connect_timeout": 1,
            "key_prefix": STORAGE_PREFIX,
            **tls.redis_tls_kwargs(settings.redis_url or "", settings.redis_ca_bundle),  # rediss:// verified alike
        },
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.request_filter(_not_counted)
    # flask-limiter logs every refused request at INFO: one client in a loop would flood the log (_log_once logs
    # instead). Its other lines stay: storage unreachable, storage recovered.
    limiter.logger.addFilter(_drop_breach_lines)
    app.register_error_handler(RateLimitExceeded, _too_many(limiter))
    return limiter


def close(app: Flask) -> None:
    """Close the Redis connections of ``app``'s limiters (their storage holds a client of its own)."""
    for limiter in app.extensions.get("limiter", ()):
        if isinstance(limiter.storage, WindowFromHitStorage):
            limiter.storage.close()


def _describe(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name + ("s" if item.multiples > 1 else "")
    return f"{item.amount} per {item.multiples} {unit}"


def _too_many(limiter: Limiter) -> Callable[[RateLimitExceeded], ResponseReturnValue]:
    def handler(exc: RateLimitExceeded) -> ResponseReturnValue:
        item = exc.limit.limit
        current = limiter.current_limit
        # The window's own end: RequestLimit.reset_at adds a second to it.
        reset_at = current.window[0] if current is not None else time.time() + item.get_expiry()
        retry_after = max(1, math.ceil(reset_at - time.time()))
        setattr(g, _RETRY_AFTER, retry_after)
        who = "this address" if _is_join() or not presented_token() else "this token"
        _log_once(exc.limit.key_func(), item)
        body = jsonify({"error": f"rate limit exceeded: {_describe(item)} for {who}; retry after {retry_after} s"})
        body.status_code = 429
        return body

    return handler


def _set_retry_after(response: Response) -> Response:
    retry_after = g.get(_RETRY_AFTER)
    if retry_after is not None:
        # flask-limiter writes its own, which rounds down to 0 within the window's last second.
        response.headers["Retry-After"] = str(retry_after)
    return response


def _drop_breach_lines(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("ratelimit ")


def _log_once(key: str, item: RateLimitItem) -> None:
    now = time.monotonic()
    if now - _last_logged.get(key, -math.inf) < LOG_EVERY_SECONDS:
        return
    if len(_last_logged) > 10_000:
        _last_logged.clear()  # bounded: many addresses over their limit must not grow a worker
    _last_logged[key] = now
    logger.warning(
        "%s over its rate limit (%s) on %s: answered 429 (logged once a minute per worker)",
        key,
        _describe(item),
        request.path,
    )
