"""GET /api/tasks/<id>/output: Server-Sent Events of the live output, read from the streamed response."""

from __future__ import annotations

import json
import threading
from typing import Any

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.services import job_keys
from shared import keys, report_streams
from tests.support import wait_until

from .tasks_helpers import add_node, create, detail, finish, output, parse_sse


def read_stream(client: FlaskClient, path: str, headers: dict[str, str] | None = None) -> list[tuple[str, Any]]:
    response = client.get(path, buffered=False, headers=headers or {})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream" and response.headers["X-Accel-Buffering"] == "no"
    body = "".join(chunk.decode() for chunk in response.response)  # type: ignore[union-attr]
    response.close()
    return [(event, json.loads(data)) for event, data in parse_sse(body) if event != "comment"]


def test_a_late_client_gets_every_line_from_the_first_then_end(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")
    task_id = create(client, targets=["*"])["task_id"]
    output(redis_client, task_id, "n1", "stdout", [f"line {i}" for i in range(1500)])
    output(redis_client, task_id, "n2", "stderr", ["oops"])
    finish(redis_client, task_id, "n1")
    finish(redis_client, task_id, "n2", exit_code=2)
    wait_until(lambda: detail(client, task_id)["finished_at"], what="task over")
    got = read_stream(client, f"/api/tasks/{task_id}/output")
    lines = [data for event, data in got if event == "line"]
    # Each node's lines in their order, every one of them. Across nodes the order is the stream ids', whose
    # milliseconds are Redis's: two nodes' lines written in the same millisecond have no order between them
    # (n2's line may land among n1's last ones), so none is asked for.
    n1 = [d for d in lines if d["node_id"] == "n1"]
    assert [d["line"] for d in n1] == [f"line {i}" for i in range(1500)]
    assert n1[0] == {"node_id": "n1", "hostname": "web-01", "stream": "stdout", "line": "line 0"}
    assert [d for d in lines if d["node_id"] == "n2"] == [
        {"node_id": "n2", "hostname": "web-02", "stream": "stderr", "line": "oops"}
    ]
    assert len(lines) == 1501
    assert got[-1] == ("end", {"task_id": task_id, "status": "failed"})
    only_n2 = read_stream(client, f"/api/tasks/{task_id}/output?node=n2")
    assert [d["line"] for e, d in only_n2 if e == "line"] == ["oops"]


def test_live_lines_arrive_while_the_command_runs(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    task_id = create(client, targets=["n1"])["task_id"]
    output(redis_client, task_id, "n1", "stdout", ["before"])
    received: list[tuple[str, Any]] = []
    chunks: list[str] = []

    def follower() -> None:
        response = app.test_client().get(f"/api/tasks/{task_id}/output", buffered=False)
        for chunk in response.response:  # type: ignore[union-attr]
            chunks.append(chunk.decode())
        response.close()
        received.extend((e, json.loads(d)) for e, d in parse_sse("".join(chunks)) if e != "comment")

    thread = threading.Thread(target=follower)
    thread.start()
    wait_until(lambda: "before" in "".join(chunks), what="stored line sent")
    output(redis_client, task_id, "n1", "stdout", ["live 1", "live 2"])
    wait_until(lambda: "live 2" in "".join(chunks), what="live lines sent")
    assert thread.is_alive()  # the command still runs: the stream stays open
    finish(redis_client, task_id, "n1")
    thread.join(10)
    assert not thread.is_alive()
    assert [d["line"] for e, d in received if e == "line"] == ["before", "live 1", "live 2"]
    assert received[-1] == ("end", {"task_id": task_id, "status": "completed"})


def test_reconnect_with_last_event_id_resumes_after_it(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    task_id = create(client, targets=["n1"])["task_id"]
    output(redis_client, task_id, "n1", "stdout", ["a", "b", "c"])
    finish(redis_client, task_id, "n1")
    wait_until(lambda: detail(client, task_id)["finished_at"], what="task over")
    first_id = redis_client.xrange(keys.task_output(task_id, "n1"), count=1)[0][0].decode()
    got = read_stream(client, f"/api/tasks/{task_id}/output", {"Last-Event-ID": first_id})
    assert [d["line"] for e, d in got if e == "line"] == ["b", "c"]


def test_a_line_not_signed_by_its_node_is_not_shown(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    add_node(client, redis_client, "n2", "web-02", "10.0.0.2")
    task_id = create(client, targets=["n1"])["task_id"]
    output(redis_client, task_id, "n1", "stdout", ["real"])
    report_streams.append_output(redis_client, task_id, "n1", "stdout", ["unsigned"])
    report_streams.append_output(redis_client, task_id, "n1", "stdout", ["by n2"], key=job_keys.node_key("n2"))
    output(redis_client, task_id, "n1", "stdout", ["real again"])
    finish(redis_client, task_id, "n1")
    wait_until(lambda: detail(client, task_id)["finished_at"], what="task over")
    got = read_stream(client, f"/api/tasks/{task_id}/output")
    assert [d["line"] for e, d in got if e == "line"] == ["real", "real again"]
