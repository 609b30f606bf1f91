"""Workflows on a real manager and three real agents: waves, policies, succeeded_on targets, cancel, restart."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import wait_until

pytestmark = pytest.mark.e2e

HOSTNAMES = ("wf-a", "wf-b", "wf-c")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Manager, dict[str, str]]]:
    """A manager and three agents; yields the manager and each hostname's node id."""
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agents = [Agent(tmp_path, env, manager, hostname, 0.5) for hostname in HOSTNAMES]
    for agent in agents:
        agent.start()

    def online() -> dict[str, str]:
        nodes = manager.get("/api/task/node").json()["nodes"]
        return {n["hostname"]: n["id"] for n in nodes if n["status"] == 0}

    ids = wait_until(lambda: len(found := online()) == 3 and found, timeout=30, what="three agents online")
    yield manager, ids
    for agent in agents:
        if agent.alive():
            agent.terminate()
    if manager.alive():
        manager.terminate()


def step(name: str, command: str, *depends_on: str, targets: tuple[str, ...] = ("*",), **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "depends_on": list(depends_on),
        "task": {"command": command, "targets": list(targets), "timeout": 60},
        **more,
    }


def post(manager: Manager, steps: list[dict[str, Any]], wait: float = 0) -> dict[str, Any]:
    answer = requests.post(
        manager.url + "/api/workflows", json={"name": "e2e", "steps": steps}, params={"wait": wait}, timeout=wait + 10
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def steps_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in body["steps"]}


def show(manager: Manager, workflow_id: str, wait: float = 0) -> dict[str, Any]:
    answer = requests.get(f"{manager.url}/api/workflows/{workflow_id}", params={"wait": wait}, timeout=wait + 10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_diamond_then_policies_and_succeeded_on_targets(stack: tuple[Manager, dict[str, str]]) -> None:
    manager, ids = stack
    # A diamond: a -> (b, c) -> d; b and c run at once, d after both (each writes when it ran).
    body = post(
        manager,
        [
            step("a", "date +%s.%N"),
            step("b", "sleep 1; date +%s.%N", "a"),
            step("c", "sleep 1; date +%s.%N", "a"),
            step("d", "date +%s.%N", "b", "c"),
        ],
        wait=60,
    )
    assert body["status"] == "completed" and body["progress"]["text"] == "4/4", body
    stamps = {}
    for name, shown in steps_of(body).items():
        assert shown["hosts"] == {"total": 3, "ended": 3, "failed": 0, "succeeded": 3}
        task = manager.get(shown["task_url"]).json()
        stamps[name] = (min(float(h["stdout"]) for h in task["hosts"]), max(float(h["stdout"]) for h in task["hosts"]))
    assert stamps["a"][1] < stamps["b"][0] and stamps["a"][1] < stamps["c"][0]
    assert max(stamps["b"][1], stamps["c"][1]) < stamps["d"][0]
    assert abs(stamps["b"][0] - stamps["c"][0]) < 0.9, "b and c run in parallel"

    # "x" fails on wf-b: its "stop" dependent is skipped, its "continue" dependent runs, and a step
    # targeting succeeded_on:x runs on wf-a and wf-c only.
    fails_on_b = f'test "$CORRAL_NODE_ID" != "{ids["wf-b"]}"'
    body = post(
        manager,
        [
            step("x", fails_on_b),
            step("stopped", "true", "x"),
            step("anyway", "true", "x", on_failed_dependency="continue"),
            step("where_ok", "echo $CORRAL_NODE_ID", "x", on_failed_dependency="continue", targets=("succeeded_on:x",)),
        ],
        wait=60,
    )
    shown = steps_of(body)
    assert body["status"] == "failed" and shown["x"]["status"] == "failed"
    # "stopped" stops the workflow: nothing else starts once x failed.
    assert shown["stopped"]["status"] == "skipped" and "which failed" in shown["stopped"]["reason"]
    assert shown["anyway"]["status"] == "skipped" and shown["where_ok"]["status"] == "skipped"

    body = post(
        manager,
        [
            step("x", fails_on_b),
            step("anyway", "true", "x", on_failed_dependency="continue"),
            step("where_ok", "echo $CORRAL_NODE_ID", "x", on_failed_dependency="continue", targets=("succeeded_on:x",)),
        ],
        wait=60,
    )
    shown = steps_of(body)
    assert body["status"] == "failed"
    assert [shown[n]["status"] for n in ("x", "anyway", "where_ok")] == ["failed", "succeeded", "succeeded"]
    task = manager.get(shown["where_ok"]["task_url"]).json()
    assert sorted(h["stdout"].strip() for h in task["hosts"]) == sorted([ids["wf-a"], ids["wf-c"]])


def test_bad_input_creates_nothing(stack: tuple[Manager, dict[str, str]]) -> None:
    manager, _ = stack
    bad = {
        "steps: cycle a -> b -> a": [step("a", "true", "b"), step("b", "true", "a")],
        "steps[1].depends_on: unknown step 'nope'": [step("a", "true"), step("b", "true", "nope")],
        "steps.0.task.targets": [step("a", "true", targets=())],
        "steps[0].task.targets: unknown step 'q'": [step("a", "true", targets=("succeeded_on:q",))],
    }
    for field, steps in bad.items():
        answer = manager.post("/api/workflows", {"name": "bad", "steps": steps})
        assert answer.status_code == 400 and field in answer.json()["error"], (field, answer.text)
    assert manager.get("/api/workflows").json()["total"] == 0
    assert manager.get("/api/tasks").json()["total"] == 0


def test_cancel_mid_way_and_a_manager_restart_resumes(stack: tuple[Manager, dict[str, str]]) -> None:
    manager, _ = stack
    body = post(manager, [step("long", "sleep 30"), step("after", "true", "long")])
    wait_until(lambda: show(manager, body["id"])["steps"][0]["task_status"] == "running", what="long running")
    canceled = manager.post(f"/api/workflows/{body['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    ended = show(manager, body["id"], wait=30)
    assert ended["finished_at"] and [s["status"] for s in ended["steps"]] == ["canceled", "canceled"]
    assert manager.get(ended["steps"][0]["task_url"]).json()["status"] == "canceled"
    assert manager.post(f"/api/workflows/{body['id']}/cancel").status_code == 409

    # The manager stops while the first step runs; restarted, it starts the second when the first ends.
    body = post(manager, [step("first", "sleep 3"), step("second", "echo resumed", "first")])
    wait_until(lambda: show(manager, body["id"])["steps"][0]["task_status"] == "running", what="first running")
    assert manager.terminate() == 0
    manager.start()
    ended = show(manager, body["id"], wait=60)
    assert ended["status"] == "completed", ended
    task = manager.get(steps_of(ended)["second"]["task_url"]).json()
    assert {h["stdout"] for h in task["hosts"]} == {"resumed\n"}


def test_events_stream_the_steps_live(stack: tuple[Manager, dict[str, str]]) -> None:
    manager, _ = stack
    body = post(manager, [step("one", "sleep 0.5"), step("two", "sleep 0.5", "one")])
    answer = requests.get(f"{manager.url}/api/workflows/{body['id']}/events", stream=True, timeout=30)
    events = [json.loads(line[5:]) for line in answer.iter_lines(decode_unicode=True) if line.startswith("data:")]
    seen = [(e["step"], e["status"]) for e in events if "step" in e]
    # Each step seen running then succeeded, in the order the dependency gives; then the end.
    assert [x for x in seen if x[1] != "pending"][:1] == [("one", "running")]
    assert seen.index(("one", "succeeded")) < seen.index(("two", "running")) < seen.index(("two", "succeeded"))
    assert events[-1] == {"id": body["id"], "status": "completed"}


def test_the_cli_runs_lists_shows_and_cancels(stack: tuple[Manager, dict[str, str]], tmp_path: Path) -> None:
    manager, _ = stack
    env = {**isolated_env(tmp_path), "CORRAL_URL": manager.url, "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "corral"), *args], capture_output=True, text=True, timeout=120, env=env)

    spec = tmp_path / "wf.json"
    spec.write_text(json.dumps({"name": "cli-wf", "steps": [step("one", "true"), step("two", "true", "one")]}))
    done = corral("workflow", "run", str(spec), "--wait")
    assert done.returncode == 0, done.stderr
    assert "completed (2/2)" in done.stdout and "one" in done.stdout and "3/3" in done.stdout
    # Off a terminal the progress line is printed each time it changes, on stderr: the last one says it ended.
    assert "workflow cli-wf: completed 2/2 steps" in done.stderr, done.stderr
    workflow_id = done.stdout.split()[2].rstrip(":")
    assert workflow_id in corral("workflow", "list").stdout
    assert "two" in corral("workflow", "show", workflow_id).stdout
    refused = corral("workflow", "cancel", workflow_id)
    assert refused.returncode != 0 and "already completed" in refused.stderr
    spec.write_text(json.dumps({"name": "cli-bad", "steps": [step("a", "true", "b"), step("b", "true", "a")]}))
    bad = corral("workflow", "run", str(spec))
    assert bad.returncode != 0 and "cycle a -> b -> a" in bad.stderr
    long = json.loads(
        corral_json := corral(
            "workflow", "run", "--json", str(_write(tmp_path / "long.json", [step("z", "sleep 30")]))
        ).stdout
    )
    assert corral_json and long["status"] == "running"
    canceled = corral("workflow", "cancel", long["id"])
    assert canceled.returncode == 0 and "canceled" in canceled.stdout


def _write(path: Path, steps: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"name": path.stem, "steps": steps}))
    return path


def test_a_step_runs_a_registered_script_on_the_agents(stack: tuple[Manager, dict[str, str]]) -> None:
    """A step's task body is a fleet task body: a registered script with its params runs on the real agents."""
    manager, ids = stack
    script = {
        "name": "greet",
        "version": "1.0",
        "interpreter": "python3",
        "body": "import os, sys\nprint('hello', os.environ['CORRAL_PARAM_WHO'], sys.argv[1:])\n",
        "params": [{"name": "who", "type": "string", "required": True}],
    }
    assert manager.post("/api/scripts", script).status_code == 201
    scripted = {"name": "greet", "depends_on": ["first"], "task": {"script": "greet@1.0", "params": {"who": "wf"},
                                                                      "targets": ["succeeded_on:first"]}}  # fmt: skip
    body = post(manager, [step("first", "true", targets=("wf-a", "wf-c")), scripted], wait=60)
    assert body["status"] == "completed", body
    shown = steps_of(body)["greet"]
    assert shown["script"] == "greet@1.0" and shown["hosts"]["succeeded"] == 2
    task = manager.get(shown["task_url"]).json()
    assert sorted(h["host_id"] for h in task["hosts"]) == sorted([ids["wf-a"], ids["wf-c"]])
    assert {h["stdout"] for h in task["hosts"]} == {"hello wf ['--who=wf']\n"}
