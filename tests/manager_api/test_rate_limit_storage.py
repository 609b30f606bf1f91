"""The rate limits' storage (api/rate_limit_storage.py) on a real Redis: a counted request costs one round trip,
its headers read what the hit answered, and the count and expiry are limits' own (same keys)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
from flask import Flask
from limits import parse
from limits.storage import RedisStorage, storage_from_string

from manager_api import db
from manager_api.api.rate_limit_storage import WindowFromHitStorage, storage_uri
from manager_api.api.rate_limits import STORAGE_PREFIX
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from tests.support import wait_until


def _calls(client: redis_lib.Redis) -> dict[str, int]:
    return {name: int(stats["calls"]) for name, stats in client.info("commandstats").items()}


def _spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two commandstats, but the INFO that read them."""
    out = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    out["cmdstat_info"] = out.get("cmdstat_info", 0) - 1
    return {name: count for name, count in out.items() if count}


@pytest.fixture
def limited_app(settings: Settings) -> Iterator[Flask]:
    application = create_app(dataclasses.replace(settings, rate_limit="3/minute"))
    yield application
    close_app(application)
    db.close()


def test_a_counted_request_costs_one_redis_command_and_its_headers_follow_the_count(
    limited_app: Flask, redis_client: redis_lib.Redis
) -> None:
    client = limited_app.test_client()
    client.get("/api/templates")  # a first request: connections made, the script loaded
    before = _calls(redis_client)
    answer = client.get("/api/templates")
    spent = _spent(before, _calls(redis_client))
    assert answer.status_code == 200
    # One script sent (commandstats count the commands it runs too); no GET and TTL of their own for the headers.
    assert spent == {"cmdstat_evalsha": 1, "cmdstat_incrby": 1, "cmdstat_ttl": 1}, spent
    assert answer.headers["X-RateLimit-Limit"] == "3"
    assert answer.headers["X-RateLimit-Remaining"] == "1"
    reset = int(answer.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert 0 <= int(answer.headers["Retry-After"]) <= 60

    client.get("/api/templates")
    refused = client.get("/api/templates")
    assert refused.status_code == 429
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.get_json()["error"].startswith("rate limit exceeded: 3 per 1 minute for this address")


def test_the_count_and_expiry_are_limits_own_and_read_from_redis_outside_a_request(redis_url: str) -> None:
    ours = storage_from_string(storage_uri(redis_url), key_prefix=STORAGE_PREFIX)
    theirs = storage_from_string(redis_url, key_prefix=STORAGE_PREFIX)
    assert isinstance(ours, WindowFromHitStorage) and type(theirs) is RedisStorage
    try:
        item = parse("10/minute")
        key = item.key_for("test", "scope")
        assert ours.incr(key, item.get_expiry()) == 1
        assert theirs.incr(key, item.get_expiry()) == 2  # one count: the same key, as an older manager writes it
        assert ours.get(key) == theirs.get(key) == 2
        assert abs(ours.get_expiry(key) - theirs.get_expiry(key)) < 2
        assert ours.get_expiry(key) > time.time() + 55
    finally:
        ours.close()
        theirs.storage.close()  # limits' RedisStorage has no close of its own: its client's


def test_closing_the_app_closes_its_limiters_connection_too(settings: Settings, redis_client: redis_lib.Redis) -> None:
    """The limiter's storage is a Redis client of its own: left open, the collector finalized its socket unclosed
    (a ResourceWarning, which failed test_agent_schedules.py run alone)."""
    before = {c["id"] for c in redis_client.client_list()}
    application = create_app(dataclasses.replace(settings, rate_limit="3/minute"))
    try:
        assert application.test_client().get("/api/templates").status_code == 200  # counted: the limiter connects
        opened = {c["id"] for c in redis_client.client_list()} - before
        assert opened
    finally:
        close_app(application)
        db.close()
    wait_until(lambda: not opened & {c["id"] for c in redis_client.client_list()}, what="the app's connections closed")
