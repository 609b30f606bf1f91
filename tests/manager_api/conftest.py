"""Fixtures of the manager tests: a real SQLite file, the session's real Redis, the Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from manager_api import db, migrations
from manager_api.app import close_app, create_app
from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.services import job_keys
from shared import heartbeat, keys, report_streams
from shared.api import JOIN_PATH, bearer
from shared.defaults import PROTOCOL_VERSION
from tests import postgres_support

JOIN_TOKEN = "join-secret-for-tests"


def forget_migration_history() -> None:
    """Make the open database look made by a corral older than the migration history: every migration after
    0001 reverted (an old corral had none of what they add), then the history table dropped."""
    runner = migrations.runner(db.database)
    later = sorted(m.name for m in runner.status() if m.applied and m.name != "0001_initial")
    if later:
        runner.down(later[0])  # back through the oldest: every newer one too
    db.database.execute_sql("DROP TABLE schema_migrations")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str | None]:
    """With CORRAL_TEST_DB=postgresql: one database migrated once, that each test's database is copied from
    (CREATE DATABASE ... TEMPLATE takes milliseconds; migrating every test's database would take far longer)."""
    if not postgres_support.on_postgres():
        yield None
        return
    url = postgres_support.create_database()
    db.init_db(url)
    db.database.obj.close_all()  # a template must have no connection open
    yield postgres_support.database_name(url)
    postgres_support.drop_database(url)


@pytest.fixture
def database_url(tmp_path: Path, postgres_template: str | None) -> Iterator[str]:
    """The test's own empty manager database: a SQLite file, or a PostgreSQL database (CORRAL_TEST_DB)."""
    if postgres_template is None:
        yield str(tmp_path / "corral.db")
        return
    url = postgres_support.create_database(template=postgres_template)
    yield url
    if db.database.obj is not None and hasattr(db.database.obj, "close_all"):
        db.database.obj.close_all()  # this thread's pooled connections; DROP ... FORCE ends the others'
    postgres_support.drop_database(url)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, database_url: str) -> Settings:
    token_file = tmp_path / "join-token"
    token_file.write_text(JOIN_TOKEN + "\n")
    return Settings(db_path=database_url, redis_url=redis_url, join_token_file=str(token_file))


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    close_app(application)
    db.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@contextmanager
def running_duties(settings: Settings) -> Iterator[Duties]:
    """The duties thread on these settings (the test's database and Redis), ticking fast, stopped after."""
    worker = Duties(settings, tick=0.1, block_ms=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        worker.redis.close()


@pytest.fixture
def duties(app: Flask, settings: Settings) -> Iterator[Duties]:
    """The duties thread on the test's database and Redis, ticking fast."""
    with running_duties(settings) as worker:
        yield worker


def answer(response: TestResponse, expect: int = 200) -> dict[str, Any]:
    """The JSON object of an API answer, once its status code is the one expected."""
    assert response.status_code == expect, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def publish_task_event(redis_client: redis_lib.Redis, event: dict[str, Any]) -> str:
    """Publish a task event as the agent of its node does: signed with that node's key."""
    return report_streams.publish(redis_client, event, key=job_keys.node_key(event["node_id"]))


def node_secret(node_id: str) -> str:
    """The secret the tests' agent of ``node_id`` joins with."""
    return f"secret-of-node-{node_id}"


def join(
    client: FlaskClient,
    node_id: str,
    hostname: str,
    ip: str,
    interval: float = 5.0,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Join a node through the API the way an agent does (with the node's secret, see node_secret)."""
    body = {
        "node_id": node_id,
        "hostname": hostname,
        "ip": ip,
        "interval": interval,
        "protocol": PROTOCOL_VERSION,
        "facts": facts or {},
        "node_secret": node_secret(node_id),
    }
    return answer(client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN)))


def beat(
    redis_client: redis_lib.Redis,
    node_id: str,
    cpu: float = 10.0,
    memory: float = 20.0,
    interval: float = 5.0,
) -> None:
    """One heartbeat of ``node_id`` as the agent writes it (its summary signed with the node's key)."""
    heartbeat.write(
        redis_client,
        node_id,
        {"interval": interval, "cpu_usage_percent": cpu, "memory_usage_percent": memory, "hostname": node_id},
        key=job_keys.node_key(node_id),
    )


def online_node(
    client: FlaskClient,
    redis_client: redis_lib.Redis,
    node_id: str,
    ip: str,
    cpu: float = 10.0,
    memory: float = 20.0,
) -> None:
    """A joined node with a fresh heartbeat."""
    join(client, node_id, f"host-{node_id}", ip)
    beat(redis_client, node_id, cpu, memory)


def template_body(name: str, *groups: list[str]) -> dict[str, Any]:
    """A template whose groups hold tasks with these commands."""
    return {
        "name": name,
        "task_groups": [
            {"tasks": [{"name": f"task-{gi}-{ti}", "config": {"command": c}} for ti, c in enumerate(group)]}
            for gi, group in enumerate(groups)
        ],
    }


def _stream_id(entry_id: bytes | str) -> tuple[int, ...]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return tuple(int(part) for part in text.split("-")) if text else ()


def stream_consumed(redis_client: redis_lib.Redis, node_id: str, entry_id: str | None) -> bool:
    """Whether the duties' group read ``node_id``'s reports stream up to ``entry_id`` (read first, then checked:
    the other way round an undelivered batch would pass) and acked everything it read."""
    stream = keys.node_reports(node_id)
    groups = redis_client.xinfo_groups(stream) if redis_client.exists(stream) else []
    last = groups[0]["last-delivered-id"] if groups else b""
    pending = redis_client.xpending(stream, keys.EVENTS_GROUP)["pending"] if groups else 1
    return bool(entry_id and _stream_id(last) >= _stream_id(entry_id) and pending == 0)
