"""Fixtures shared by every test package: a private redis-server per session, a clean db per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from tests.support import RedisServer

# podman, the busybox image tar, an HTTP file server and sshd: started only by the tests that ask for them.
# postgres_url: a PostgreSQL database of the test's own.
pytest_plugins = ["tests.engine_fixtures", "tests.postgres_support"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server on a free port for the whole session (never the machine's 6379)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private Redis's URL, emptied before the test so each test starts clean."""
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()
