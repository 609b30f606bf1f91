"""The rate limits' Redis storage: the count of a request and its window's expiry in one round trip.

limits' RedisStorage counts a hit with one script (INCRBY, and EXPIRE on the window's first hit), then
Flask-Limiter asks for the window's count and expiry for the ``X-RateLimit-*`` and ``Retry-After`` headers: a GET
and a TTL, two more round trips on every API request. This storage's script answers the count and the TTL with
the hit, and keeps them for the rest of the request (flask.g), where the headers' GET and TTL of the same key find
them. Same keys, same counting, same expiry as RedisStorage (managers of an older version on the same Redis share
the counts); outside a request, or for another key, it asks Redis as RedisStorage does.

It registers, as limits' documentation says a custom storage does, under its own URL schemes (SCHEME_PREFIX before
redis://, rediss:// or redis+unix://); storage_uri() writes them.
"""

from __future__ import annotations

import time
from typing import Any

from flask import g, has_request_context
from limits.storage import RedisStorage

SCHEME_PREFIX = "corral+"
"""Before a Redis URL, names this storage to limits' storage_from_string."""

_SEEN = "corral_rate_window"
"""Where the last hit of the request leaves (key, count, expires at) for the headers (flask.g)."""

INCR_WITH_TTL = b"""
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if tonumber(current) == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""
"""limits' incr_expire.lua (a window's first hit sets its expiry), answering the key's TTL with the count."""


def storage_uri(redis_url: str) -> str:
    """The storage URI of ``redis_url`` that names this storage."""
    return SCHEME_PREFIX + redis_url


class WindowFromHitStorage(RedisStorage):
    """RedisStorage whose hit also answers the window's count and expiry, kept for the request's headers."""

    STORAGE_SCHEME = [SCHEME_PREFIX + scheme for scheme in RedisStorage.STORAGE_SCHEME if scheme.startswith("redis")]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self.lua_incr_with_ttl = self.get_connection().register_script(INCR_WITH_TTL)

    def close(self) -> None:
        """Close the Redis client limits made from the URI, with its own pool (not the app's). Left to the garbage
        collector, its socket may be finalized before the connection that would close it: a ResourceWarning."""
        self.storage.close()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        full = self.prefixed_key(key)
        current, ttl = self.lua_incr_with_ttl([full], [expiry, amount])
        if has_request_context():
            # As RedisStorage.get_expiry reads it: a TTL in whole seconds (-1, -2: none) from now.
            setattr(g, _SEEN, (full, int(current), max(int(ttl), 0) + time.time()))
        return int(current)

    def _seen(self, key: str) -> tuple[str, int, float] | None:
        seen: tuple[str, int, float] | None = g.get(_SEEN) if has_request_context() else None
        return seen if seen is not None and seen[0] == self.prefixed_key(key) else None

    def get(self, key: str) -> int:
        seen = self._seen(key)
        return seen[1] if seen is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        seen = self._seen(key)
        return seen[2] if seen is not None else super().get_expiry(key)
