"""Helpers of the fleet task tests: nodes with labels, acting as an agent, reading queues and SSE."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from manager_api.services import job_keys
from shared import keys, report_streams

from .conftest import answer, beat, join


def add_node(
    client: FlaskClient,
    redis_client: redis_lib.Redis,
    node_id: str,
    hostname: str,
    ip: str,
    labels: Any = None,
    online: bool = True,
    interval: float = 5.0,
) -> None:
    """Join a node through the API (with facts.labels) and, if ``online``, give it a fresh heartbeat."""
    join(client, node_id, hostname, ip, interval, facts={} if labels is None else {"labels": labels})
    if online:
        beat(redis_client, node_id, interval=interval)


def create(client: FlaskClient, expect: int = 201, query: str = "", **body: Any) -> dict[str, Any]:
    """POST /api/tasks with sensible defaults; checks the status code."""
    payload = {"name": "t", "command": "echo hi", "targets": ["*"], **body}
    return answer(client.post(f"/api/tasks{query}", json=payload), expect)


def detail(client: FlaskClient, task_id: str) -> dict[str, Any]:
    return answer(client.get(f"/api/tasks/{task_id}"))


def queued(redis_client: redis_lib.Redis, node_id: str) -> list[Job]:
    """The jobs waiting on a node's queue, loaded with the JSON serializer as the agent does."""
    return Queue(keys.node_queue(node_id), connection=redis_client, serializer=JSONSerializer).get_jobs()


def output(redis_client: redis_lib.Redis, task_id: str, node_id: str, stream: str, lines: list[str]) -> None:
    """Append live output lines as the agent of ``node_id`` would (signed with its key)."""
    report_streams.append_output(redis_client, task_id, node_id, stream, lines, key=job_keys.node_key(node_id))


def report(redis_client: redis_lib.Redis, task_id: str, node_id: str, status: str, **extra: Any) -> str:
    """Publish a CommandReport as the agent of ``node_id`` would."""
    body = {"task_id": task_id, "node_id": node_id, "status": status, "at": time.time(), **extra}
    return report_streams.publish_command_report(redis_client, body, key=job_keys.node_key(node_id))


def finish(redis_client: redis_lib.Redis, task_id: str, node_id: str, exit_code: int = 0, **extra: Any) -> str:
    """A running report then a final one (succeeded for exit 0, else failed)."""
    started = time.time()
    report(redis_client, task_id, node_id, "running", pid=4242, started_at=started)
    status = "succeeded" if exit_code == 0 else "failed"
    return report(
        redis_client,
        task_id,
        node_id,
        status,
        pid=4242,
        exit_code=exit_code,
        started_at=started,
        finished_at=started + 0.25,
        **extra,
    )


def host(task: dict[str, Any], node_id: str | None, target: str | None = None) -> dict[str, Any]:
    """The host of ``task`` on ``node_id`` (or, for node-less rows, with ``target``)."""
    for h in task["hosts"]:
        if h["host_id"] == node_id and (target is None or h["target"] == target):
            return h
    raise AssertionError(f"no host {node_id}/{target} in {task['hosts']}")


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body; comment lines are kept as ("comment", text)."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", ""
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data:
            out.append((event, data))
    return out
