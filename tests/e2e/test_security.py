"""Safe by default: API token, join token, loopback-only binding; with real processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

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
