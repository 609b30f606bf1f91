"""Fixtures of the manager tests: a real SQLite file, the session's real Redis, the Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import create_app
from manager_api.config import Settings
from manager_api.duties import Duties
from shared import heartbeat
from shared.api import JOIN_PATH, bearer
from shared.defaults import PROTOCOL_VERSION

JOIN_TOKEN = "join-secret-for-tests"


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    token_file = tmp_path / "join-token"
    token_file.write_text(JOIN_TOKEN + "\n")
    return Settings(db_path=str(tmp_path / "corral.db"), redis_url=redis_url, join_token_file=str(token_file))


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["corral"].redis.close()
    db.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def duties(app: Flask, settings: Settings) -> Iterator[Duties]:
    """The duties thread on the test's database and Redis, ticking fast."""
    worker = Duties(settings, tick=0.1, block_ms=100)
    worker.start()
    yield worker
    worker.stop()
    worker.redis.close()


def join(
    client: FlaskClient,
    node_id: str,
    hostname: str,
    ip: str,
    interval: float = 5.0,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Join a node through the API the way an agent does."""
    body = {
        "node_id": node_id,
        "hostname": hostname,
        "ip": ip,
        "interval": interval,
        "protocol": PROTOCOL_VERSION,
        "facts": facts or {},
    }
    response = client.post(JOIN_PATH, json=body, headers=bearer(JOIN_TOKEN))
    assert response.status_code == 200, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def beat(
    redis_client: redis_lib.Redis,
    node_id: str,
    cpu: float = 10.0,
    memory: float = 20.0,
    interval: float = 5.0,
) -> None:
    """One heartbeat of ``node_id`` as the agent writes it."""
    heartbeat.write(
        redis_client,
        node_id,
        {"interval": interval, "cpu_usage_percent": cpu, "memory_usage_percent": memory, "hostname": node_id},
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
