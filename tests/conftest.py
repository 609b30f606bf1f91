"""Fixtures shared by every test package: a private redis-server per session, a clean db per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from tests import postgres_support
from tests.support import RedisServer

# podman, the busybox image tar, an HTTP file server and sshd: started only by the tests that ask for them.
pytest_plugins = ["tests.engine_fixtures"]


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


@pytest.fixture(scope="session", autouse=True)
def postgres_databases() -> Iterator[None]:
    """With CORRAL_TEST_DB=postgresql: drop, at the end, the databases the managers of the tests were given."""
    yield
    if postgres_support.on_postgres():
        postgres_support.drop_created()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass leaves out the tests of SQLite's own files and locks (marked sqlite_only): the SQLite
    pass runs them. They are reported as deselected, never as passed."""
    if not postgres_support.on_postgres():
        return
    kept = [item for item in items if item.get_closest_marker("sqlite_only") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database of this test's own, whatever CORRAL_TEST_DB says (dropped after)."""
    with postgres_support.postgres_database() as url:
        yield url
