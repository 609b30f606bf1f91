"""Waiting for a fleet task (``?wait=N``) on a real Redis: what it leaves behind for the next request."""

from __future__ import annotations

import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api.services.fleet_tasks import reads as fleet_task_reads

from .tasks_helpers import add_node, create


def test_a_wait_leaves_the_apps_redis_connection_open_for_the_next_request(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    task = create(client, targets=["web-01"], start=False)
    shared: redis_lib.Redis = app.extensions["corral"].redis
    before = shared.client_id()

    with app.app_context():
        fleet_task_reads.wait(shared, task["task_id"], 0.05)  # a pending task: returns when the time is up

    # The same server-side client: the next request dispatches without reconnecting first.
    assert shared.client_id() == before
    listeners = [c for c in redis_client.client_list() if int(c.get("sub", 0)) > 0]
    assert listeners == [], "the waiter's own connection is closed"


def test_a_wait_hands_back_the_ended_tasks_row_and_nothing_for_one_still_going(
    app: Flask, client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    """The ?wait answer of an ended task is built from the row the wait read last (one query fewer)."""
    add_node(client, redis_client, "n1", "web-01", "10.0.0.1")
    going = create(client, targets=["web-01"], start=False)["task_id"]
    ended = create(client, targets=["web-01"], start=False)["task_id"]
    assert client.post(f"/api/tasks/{ended}/cancel").status_code == 200
    shared: redis_lib.Redis = app.extensions["corral"].redis

    with app.app_context():
        assert fleet_task_reads.wait(shared, going, 0.05) is None  # time up: the caller reads the task anew
        assert fleet_task_reads.wait(shared, "no-such-task", 0.05) is None
        row = fleet_task_reads.wait(shared, ended, 5)
    assert row is not None and row.task_id == ended and row.status == "canceled"

    answer = client.get(f"/api/tasks/{ended}?wait=5").get_json()
    assert answer["status"] == "canceled" and answer["task_id"] == ended
