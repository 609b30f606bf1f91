"""Safe by default: API token, join token, loopback-only binding; with real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from shared import api, keys
from shared.defaults import PROTOCOL_VERSION
from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e


def test_api_token_guards_every_call_and_agents_join_only_with_the_join_token(tmp_path: Path) -> None:
    env = isolated_env(tmp_path) | {"CORRAL_API_TOKEN": "s3cret-api-token"}
    manager = Manager(tmp_path, env)
    manager.start()
    try:
        assert manager.get("/healthz").status_code == 200
        denied = manager.get("/api/task/node")
        assert denied.status_code == 401 and "error" in denied.json()
        assert manager.get("/deployments/whatever").status_code == 401
        assert (
            manager.post("/api/task/query", {"name": "x"}, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        auth = {"Authorization": "Bearer s3cret-api-token"}
        assert manager.get("/api/task/node", headers=auth).json() == {"nodes": []}

        intruder_env = {k: v for k, v in env.items() if k != "CORRAL_API_TOKEN"}
        intruder = Agent(tmp_path, intruder_env, manager, "intruder", 0.5)
        intruder.args += ["--token", "not-the-join-token"]
        intruder.start()
        wait_until(lambda: "rejected" in intruder.output(), timeout=15, what="join refused in the agent's log")
        assert manager.get("/api/task/node", headers=auth).json() == {"nodes": []}
        assert intruder.terminate() == 0

        # A local agent finds the join token by itself.
        local = Agent(tmp_path, intruder_env, manager, "local", 0.5)
        local.start()
        nodes = wait_until(lambda: manager.get("/api/task/node", headers=auth).json()["nodes"], timeout=20, what="join")
        assert [n["hostname"] for n in nodes] == ["local"]
        assert local.terminate() == 0
    finally:
        assert manager.terminate() == 0
    assert "s3cret-api-token" not in manager.output()


def test_refuses_to_bind_beyond_loopback_without_an_api_token(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    done = subprocess.run(
        [str(BIN / "manager"), "--host", "0.0.0.0", "--port", str(free_port()), "--db-path", str(tmp_path / "m.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "token" in (done.stderr + done.stdout).lower()


def test_agents_get_a_redis_user_that_cannot_administer_redis(tmp_path: Path) -> None:
    """A compromised node must not turn the manager's Redis against the manager's host (CONFIG SET dir...)."""
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    try:
        token = (manager.db_path.parent / "join-token").read_text().strip()
        joined = requests.post(
            manager.url + api.JOIN_PATH,
            json={
                "node_id": "n-1",
                "hostname": "n-1",
                "ip": "127.0.0.1",
                "interval": 5,
                "protocol": PROTOCOL_VERSION,
                "node_secret": "secret-of-n-1-in-this-test",
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert joined.status_code == 200, joined.text
        agent_url = joined.json()["redis_url"]
        manager_password = (manager.db_path.parent / "corral-redis" / "password").read_text().strip()
        assert manager_password not in agent_url

        as_agent = redis_lib.Redis.from_url(agent_url)
        try:
            # Its node's own keys and streams: what an agent does (tests/faults/test_node_redis_acl.py: nothing else).
            as_agent.set(keys.node_prefix("n-1") + "probe", "1")
            assert as_agent.xadd(keys.node_reports("n-1"), {"a": "1"})
            assert as_agent.info("server")["redis_version"]  # RQ reads the version
            for refused in (
                lambda: as_agent.config_set("dir", str(tmp_path)),
                lambda: as_agent.config_get("requirepass"),
                as_agent.flushall,
                lambda: as_agent.keys("*"),
                lambda: as_agent.acl_setuser("evil", enabled=True),
                lambda: as_agent.acl_whoami(),
                lambda: as_agent.execute_command("MODULE", "LIST"),
                lambda: as_agent.execute_command("REPLICAOF", "NO", "ONE"),
                lambda: as_agent.execute_command("SHUTDOWN", "NOSAVE"),
            ):
                with pytest.raises(redis_lib.exceptions.NoPermissionError):
                    refused()
        finally:
            as_agent.close()

        # A real agent works its queue through that user.
        agent = Agent(tmp_path, env, manager, "real-1", 0.5)
        agent.start()
        try:
            wait_until(
                lambda: [
                    n
                    for n in manager.get("/api/task/node").json()["nodes"]
                    if n["hostname"] == "real-1" and n["status"] == 0
                ],
                timeout=20,
                what="the agent online",
            )
            ran = manager.post("/api/tasks?wait=20", {"name": "t", "command": "echo hi", "targets": ["real-1"]})
            assert ran.status_code in (200, 201) and ran.json()["status"] == "completed", ran.text
        finally:
            assert agent.terminate() == 0
    finally:
        assert manager.terminate() == 0
    assert manager_password not in manager.output()
