"""`corral app`: create, list, show, scale, update, restart, stop, start, logs (tail and -f), delete, against a
real manager and agent (the agent's side of apps is not needed: the manager's answers are what is shown)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import redis

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


def test_app_verbs(stack: Stack, tmp_path: Path) -> None:
    spec = {"name": "cli-web", "toProcess": "python3", "args": ["-m", "http.server"], "ports": [0], "instances": 1}
    spec["nodeQuery"] = f"hostname:{HOST}"
    file = tmp_path / "app.json"
    file.write_text(json.dumps(spec))
    created = ok(stack.corral("app", "create", str(file))).stdout
    assert created.startswith("cli-web  running  version 1  0/1 running") and "INSTANCE" in created
    assert ok(stack.corral("app", "create", str(file)), 2).stderr.count("already exists") == 1
    listed = ok(stack.corral("app", "list")).stdout.splitlines()
    assert listed[0].split() == ["NAME", "STATUS", "VERSION", "RUNNING", "HEALTHY", "NOTE"]
    assert listed[1].split()[:4] == ["cli-web", "running", "1", "0/1"]
    shown = json.loads(ok(stack.corral("app", "show", "cli-web", "--json")).stdout)
    [instance] = shown["instances"]
    assert instance["hostname"] == HOST
    scaled = json.loads(ok(stack.corral("app", "scale", "cli-web", "2", "--json")).stdout)
    assert scaled["definition"]["instances"] == 2 and len(scaled["instances"]) == 2  # one node: two on it
    bad = ok(stack.corral("app", "scale", "cli-web", "--", "-1"), 2)
    assert ": instances: " in bad.stderr  # the manager's 400, naming the field
    file.write_text(json.dumps({**spec, "instances": 2, "envs": {"V": "2"}}))
    updated = json.loads(ok(stack.corral("app", "update", str(file), "--json")).stdout)
    assert updated["version"] == 2 and updated["deployment"]["in_progress"]
    assert "version 3" in ok(stack.corral("app", "restart", "cli-web")).stdout
    assert ok(stack.corral("app", "stop", "cli-web")).stdout.startswith("cli-web  stopped")
    started = json.loads(ok(stack.corral("app", "start", "cli-web", "--json")).stdout)
    assert started["status"] == "running"
    # Logs: lines as the agent of the instance's node appends them (signed with its key).
    instance = next(i for i in started["instances"] if i["desired"] == "run")
    client = redis.Redis.from_url(stack.manager.redis_url())
    key = node_key(stack, instance["node_id"])
    report_streams.append_instance_log(client, instance["node_id"], instance["id"], "stdout", ["one", "two"], key=key)
    report_streams.append_instance_log(client, instance["node_id"], instance["id"], "stderr", ["warn"], key=key)
    tail = ok(stack.corral("app", "logs", "cli-web", instance["id"], "--tail", "2"))
    assert (tail.stdout, tail.stderr) == ("two\n", "warn\n")
    follow = subprocess.Popen(
        [str(BIN / "corral"), "app", "logs", "cli-web", instance["id"], "-f", "--stream", "stdout", "--tail", "1"],
        stdout=subprocess.PIPE,
        text=True,
        env=stack.cli_env(),
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "two\n"
        # Read on from the tail's last line: a line appended before the stream opened is not missed.
        report_streams.append_instance_log(client, instance["node_id"], instance["id"], "stdout", ["three"], key=key)
        assert follow.stdout.readline() == "three\n"
    finally:
        follow.terminate()
        follow.wait(10)
        if follow.stdout is not None:
            follow.stdout.close()
    deleted = ok(stack.corral("app", "delete", "cli-web")).stdout
    assert deleted.startswith("app cli-web deleted, ")
    wait_until(lambda: stack.manager.get("/api/apps/cli-web").status_code == 404, timeout=10)
    assert "not found" in ok(stack.corral("app", "show", "cli-web"), 2).stderr
    client.close()
