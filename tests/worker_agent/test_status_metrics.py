"""GET /metrics on a real agent's status port: the node's CPU and memory, the commands it runs, its process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared import api
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import free_port, kill_marked, wait_until

MARK = "sleep 30.71"


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}."""
    answer = requests.get(f"http://127.0.0.1:{port}{api.METRICS_PATH}", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain; version=")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("agent-metrics")
    env = isolated_env(tmp)
    manager = Manager(tmp, env)
    manager.start()
    port = free_port()
    agent = Agent(tmp, env, manager, "scraped", 0.5)
    agent.args[agent.args.index("--port") + 1] = str(port)
    agent.start()
    wait_until(lambda: scrape_or_none(port) is not None, timeout=30, what="the agent's status port")
    yield {"manager": manager, "agent": agent, "port": port}
    agent.terminate()
    manager.terminate()
    kill_marked(MARK)


def scrape_or_none(port: int) -> dict[str, Any] | None:
    try:
        return scrape(port)
    except requests.ConnectionError:
        return None


def test_node_figures_and_process(stack: dict[str, Any]) -> None:
    port = stack["port"]
    # The heartbeat's percentages come with the first heartbeat after the join.
    families = wait_until(
        lambda: (f := scrape(port)).get("corral_node_cpu_usage_percent") and f, timeout=20, what="a heartbeat's figures"
    )
    assert 0 <= families["corral_node_cpu_usage_percent"][()] <= 100
    assert 0 < families["corral_node_memory_usage_percent"][()] < 100
    assert families["corral_node_memory_total_bytes"][()] > families["corral_node_memory_available_bytes"][()] > 0
    assert families["corral_node_cpu_seconds_total"][(("mode", "idle"),)] > 0
    assert families["corral_agent_joined"][()] == 1
    (labels,) = families["corral_agent_info"]
    assert dict(labels)["hostname"] == "scraped"
    assert families["process_resident_memory_bytes"][()] > 0  # prometheus_client's, of the agent
    assert families["corral_agent_tasks"][(("state", "RUNNING"),)] == 0


def test_running_command_is_counted(stack: dict[str, Any]) -> None:
    manager: Manager = stack["manager"]
    port = stack["port"]
    assert scrape(port)["corral_agent_commands_running"][()] == 0
    answer = manager.post("/api/tasks", {"name": "slow", "command": MARK, "targets": ["*"], "timeout": 60})
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["task_id"]
    wait_until(lambda: scrape(port)["corral_agent_commands_running"][()] == 1, timeout=20, what="command running")
    assert manager.post(f"/api/tasks/{task_id}/cancel").status_code == 200
    wait_until(lambda: scrape(port)["corral_agent_commands_running"][()] == 0, timeout=20, what="command ended")


def test_other_paths_are_not_found(stack: dict[str, Any]) -> None:
    answer = requests.get(f"http://127.0.0.1:{stack['port']}/metricsx", timeout=10)
    assert answer.status_code == 404
    assert requests.get(f"http://127.0.0.1:{stack['port']}{api.HEALTH_PATH}", timeout=10).json()["status"] == "ok"
