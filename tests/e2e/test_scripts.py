"""Registered scripts (issue 17) on a real manager and two real agents: params as args and env, a secret never
shown, fetched once per agent (then the checked cache), a zip with an entry, bad input, a tampered cache."""

from __future__ import annotations

import base64
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
HOSTS = ("script-a", "script-b")
SECRET = "s3cret-value-never-shown"
BODY = """import os, sys
print("args", " ".join(sys.argv[1:]))
print("who", os.environ["CORRAL_PARAM_WHO"], "count", os.environ["CORRAL_PARAM_COUNT"])
print("token-length", len(os.environ.get("CORRAL_PARAM_TOKEN", "")))
"""
PARAMS = [
    {"name": "who", "type": "string", "required": True},
    {"name": "count", "type": "int", "default": 2},
    {"name": "token", "type": "string", "secret": True},
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("scripts")
    env = isolated_env(tmp)
    manager = Manager(tmp, env)
    manager.start()
    agents = {name: Agent(tmp, env, manager, name, INTERVAL) for name in HOSTS}
    for agent in agents.values():
        agent.start()
    wait_until(lambda: len(online(manager)) == len(HOSTS), timeout=30, what="two agents online")
    yield {"manager": manager, "agents": agents}
    for agent in agents.values():
        if agent.alive():
            agent.terminate()
    manager.terminate()


def online(manager: Manager) -> dict[str, str]:
    nodes = manager.get("/api/task/node").json()["nodes"]
    return {n["hostname"]: n["id"] for n in nodes if n["status"] == 0}


def register(manager: Manager, **body: Any) -> dict[str, Any]:
    response = manager.post("/api/scripts", body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def run(manager: Manager, expect: int = 201, **body: Any) -> dict[str, Any]:
    payload = {"name": "e2e-script", "targets": list(HOSTS), **body}
    response = requests.post(f"{manager.url}/api/tasks?wait=30", json=payload, timeout=40)
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


def cached(agent: Agent, digest: str, name: str = "script") -> Path:
    return agent.data_dir / "scripts" / digest / name


def test_a_script_runs_with_its_params_and_is_fetched_once(fleet: dict[str, Any]) -> None:
    manager = fleet["manager"]
    script = register(manager, name="hello", version="1.0", interpreter="python3", body=BODY, params=PARAMS)
    task = run(manager, script="hello@1.0", params={"who": "ann", "token": SECRET})
    assert task["status"] == "completed", task
    for host in task["hosts"]:
        assert host["status"] == "succeeded", host
        assert host["stdout"] == f"args --who=ann --count=2\nwho ann count 2\ntoken-length {len(SECRET)}\n"
    assert task["script"]["secret_params"] == ["token"] and task["secretEnv"] == {"CORRAL_PARAM_TOKEN": "(secret)"}
    assert SECRET not in manager.get(f"/api/tasks/{task['task_id']}").text
    assert SECRET not in manager.output()
    stats = {}
    for agent in fleet["agents"].values():
        stats[agent.hostname] = os.stat(cached(agent, script["digest"]))
        assert SECRET not in agent.output()
        assert agent.output().count(f"({script['digest'][:12]}) fetched") == 1
    again = run(manager, script="hello@1.0", params={"who": "bob", "count": 5})
    assert [h["stdout"].splitlines()[0] for h in again["hosts"]] == ["args --who=bob --count=5"] * 2
    for agent in fleet["agents"].values():
        now = os.stat(cached(agent, script["digest"]))
        assert (now.st_ino, now.st_mtime_ns) == (stats[agent.hostname].st_ino, stats[agent.hostname].st_mtime_ns)
        assert agent.output().count(f"({script['digest'][:12]}) fetched") == 1
        assert f"({script['digest'][:12]}) from the cache" in agent.output()


def test_a_zip_script_runs_its_entry(fleet: dict[str, Any]) -> None:
    manager = fleet["manager"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tool/run.sh", '. "$(dirname "$0")/lib/greet.sh"; greet "$CORRAL_PARAM_WHO" "$@"\n')
        archive.writestr("tool/lib/greet.sh", 'greet() { echo "hello $*"; }\n')
    encoded = base64.b64encode(buffer.getvalue()).decode()
    register(
        manager,
        name="zipped",
        version="2",
        interpreter="sh",
        archive=encoded,
        entry="tool/run.sh",
        params=[{"name": "who", "type": "string", "default": "world"}],
    )
    task = run(manager, script="zipped@2")
    assert [h["stdout"] for h in task["hosts"]] == ["hello world --who=world\n"] * 2, task


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"script": "nope@1"}, "script: unknown script 'nope'"),
        ({"script": "hello@7"}, "script: 'hello' has no version '7'"),
        ({"script": "hello@1.0", "params": {}}, "params.who: required"),
        ({"script": "hello@1.0", "params": {"who": "a", "count": "3"}}, "params.count: must be of type int"),
        ({"script": "hello@1.0", "params": {"who": "a", "nope": 1}}, "params.nope: unknown parameter"),
    ],
)
def test_bad_runs_are_400_and_create_no_task(fleet: dict[str, Any], body: dict[str, Any], message: str) -> None:
    manager = fleet["manager"]
    if manager.get("/api/scripts/hello/1.0").status_code == 404:
        register(manager, name="hello", version="1.0", interpreter="python3", body=BODY, params=PARAMS)
    before = manager.get("/api/tasks").json()["total"]
    answer = run(manager, 400, **body)
    assert message in answer["error"], answer
    assert manager.get("/api/tasks").json()["total"] == before


def test_a_tampered_cache_is_fetched_again(fleet: dict[str, Any]) -> None:
    manager = fleet["manager"]
    body = "print('genuine')\n"
    script = register(manager, name="tamper", version="1", interpreter="python3", body=body)
    assert [h["stdout"] for h in run(manager, script="tamper@1")["hosts"]] == ["genuine\n"] * 2
    agent = fleet["agents"][HOSTS[0]]
    path = cached(agent, script["digest"])
    path.chmod(0o600)
    path.write_text("print('tampered')\n")
    task = run(manager, script="tamper@1")
    assert [h["stdout"] for h in task["hosts"]] == ["genuine\n"] * 2, task
    assert path.read_text() == body
    assert f"cached script tamper@1 ({script['digest'][:12]}) does not match its digest" in agent.output()
