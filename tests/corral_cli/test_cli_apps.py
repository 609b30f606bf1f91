"""`corral app`: create, list, show, scale, update, restart, stop, start, logs (tail and -f), delete, against a
real manager and agent."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import job_signing, report_streams
from tests.corral_cli.stack import HOST, Stack, ok
from tests.e2e.harness import BIN
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def node_key(stack: Stack, node_id: str) -> bytes:
    """The signing key of ``node_id``, derived as the manager does from its master key."""
    conn = sqlite3.connect(stack.manager.db_path)
    try:
        (value,) = conn.execute("SELECT value FROM manager_key WHERE name = 'job-signing'").fetchone()
    finally:
        conn.close()
    return job_signing.node_key(bytes.fromhex(value), node_id)


def app_json(stack: Stack) -> dict[str, Any]:
    """GET /api/apps/cli-web straight from the manager (for polling around the CLI under test)."""
    got: dict[str, Any] = stack.manager.get("/api/apps/cli-web").json()
    return got


def running(stack: Stack, count: int) -> bool:
    instances = app_json(stack)["instances"]
    return len(instances) == count and all(i["state"] == "running" and i["pid"] for i in instances)


def no_instance_left(stack: Stack) -> bool:
    answer = stack.manager.get("/api/apps/cli-web")
    return answer.status_code == 404 or not answer.json()["instances"]


def test_app_verbs(stack: Stack, tmp_path: Path) -> None:
    try:
        check_app_verbs(stack, tmp_path)
    finally:
        # The stack's agent runs the instances: none may outlive the test, whatever failed.
        stack.manager.post("/api/apps/cli-web/stop")
        wait_until(lambda: no_instance_left(stack), timeout=60, what="every instance stopped")
        requests.delete(stack.manager.url + "/api/apps/cli-web", timeout=10)


def check_app_verbs(stack: Stack, tmp_path: Path) -> None:
    spec = {"name": "cli-web", "toProcess": "sleep", "args": ["600"], "instances": 1}
    spec["nodeQuery"] = f"hostname:{HOST}"
    file = tmp_path / "app.json"
    file.write_text(json.dumps(spec))
    created = ok(stack.corral("app", "create", str(file))).stdout
    assert created.startswith("cli-web  running  version 1  0/1 running") and "INSTANCE" in created
    assert ok(stack.corral("app", "create", str(file)), 2).stderr.count("already exists") == 1
    wait_until(lambda: running(stack, 1), timeout=30, what="the instance running on the real agent")
    listed = ok(stack.corral("app", "list")).stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATUS", "VERSION", "RUNNING", "HEALTHY", "NOTE"]
    assert listed[1].split()[:5] == ["cli-web", "running", "1", "1/1", "1"]  # no checks: running is healthy
    shown = ok(stack.corral("app", "show", "cli-web")).stdout.splitlines()
    [instance] = app_json(stack)["instances"]
    assert shown[0] == "cli-web  running  version 1  1/1 running, 1 healthy"
    assert shown[4].split()[:6] == [instance["id"], "1", HOST, "running", "healthy", str(instance["pid"])]
    scaled = json.loads(ok(stack.corral("app", "scale", "cli-web", "2", "--json")).stdout)
    assert scaled["definition"]["instances"] == 2 and len(scaled["instances"]) == 2  # one node: two on it
    bad = ok(stack.corral("app", "scale", "cli-web", "--", "-1"), 2)
    assert ": instances: " in bad.stderr  # the manager's 400, naming the field
    wait_until(lambda: running(stack, 2), timeout=30)
    file.write_text(json.dumps({**spec, "instances": 2, "envs": {"V": "2"}}))
    updated = json.loads(ok(stack.corral("app", "update", str(file), "--json")).stdout)
    assert updated["version"] == 2 and updated["deployment"]["in_progress"]
    wait_until(lambda: not app_json(stack)["deployment"]["in_progress"] and running(stack, 2), timeout=60)
    assert {i["version"] for i in app_json(stack)["instances"]} == {2}
    assert "version 3" in ok(stack.corral("app", "restart", "cli-web")).stdout
    wait_until(lambda: not app_json(stack)["deployment"]["in_progress"] and running(stack, 2), timeout=60)
    assert ok(stack.corral("app", "stop", "cli-web")).stdout.startswith("cli-web  stopped")
    wait_until(lambda: app_json(stack)["instances"] == [], timeout=60, what="stopped")
    started = json.loads(ok(stack.corral("app", "start", "cli-web", "--json")).stdout)
    assert started["status"] == "running"
    # Logs: lines as the agent of the instance's node appends them (signed with its key).
    instance = next(i for i in started["instances"] if i["desired"] == "run")
    client = redis.Redis.from_url(stack.manager.redis_url())
    try:
        check_logs(stack, client, instance["node_id"], instance["id"])
    finally:
        client.close()
    # Stopped first, and its node's word awaited, so that the delete leaves no process behind.
    ok(stack.corral("app", "stop", "cli-web"))
    wait_until(lambda: app_json(stack)["instances"] == [], timeout=60, what="stopped")
    deleted = ok(stack.corral("app", "delete", "cli-web")).stdout
    assert deleted == "app cli-web deleted, 0 instance(s) stopped\n"
    assert stack.manager.get("/api/apps/cli-web").status_code == 404
    assert "not found" in ok(stack.corral("app", "show", "cli-web"), 2).stderr


def check_logs(stack: Stack, client: redis.Redis, node_id: str, instance_id: str) -> None:
    key = node_key(stack, node_id)
    report_streams.append_instance_log(client, node_id, instance_id, "stdout", ["one", "two"], key=key)
    report_streams.append_instance_log(client, node_id, instance_id, "stderr", ["warn"], key=key)
    tail = ok(stack.corral("app", "logs", "cli-web", instance_id, "--tail", "2"))
    assert (tail.stdout, tail.stderr) == ("two\n", "warn\n")
    follow = subprocess.Popen(
        [str(BIN / "corral"), "app", "logs", "cli-web", instance_id, "-f", "--stream", "stdout", "--tail", "1"],
        stdout=subprocess.PIPE,
        text=True,
        env=stack.cli_env(),
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "two\n"
        # Read on from the tail's last line: a line appended before the stream opened is not missed.
        report_streams.append_instance_log(client, node_id, instance_id, "stdout", ["three"], key=key)
        assert follow.stdout.readline() == "three\n"
    finally:
        follow.terminate()
        follow.wait(10)
        if follow.stdout is not None:
            follow.stdout.close()
