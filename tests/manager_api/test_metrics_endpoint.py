"""GET /metrics of a real manager (three gunicorn workers, its duties, its Redis) with a real agent: the fleet's
state read at scrape time, counters and histograms added up over every process, the API token when set."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from shared import api
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until

WORKERS = 3
TOKEN = "metrics-test-token"


def scrape(url: str, **kw: Any) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> its samples (name, labels, value), parsed by prometheus_client's own parser."""
    answer = requests.get(url + api.METRICS_PATH, timeout=10, **kw)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(answer.text)
    }


def value(families: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    """The one sample of ``family`` (named ``sample``, default the family's name) with ``labels``."""
    found = [
        v for name, ls, v in families.get(family, []) if name == (sample or family) and labels.items() <= ls.items()
    ]
    assert len(found) == 1, f"{family}{labels}: {found} in {families.get(family)}"
    return found[0]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("metrics")
    env = isolated_env(tmp)
    manager = Manager(tmp, env, ["--workers", str(WORKERS)])
    manager.start()
    agent = Agent(tmp, env, manager, "metrics-a", 0.5)
    agent.start()
    wait_until(
        lambda: any(n["status"] == 0 for n in manager.get("/api/task/node").json()["nodes"]),
        timeout=30,
        what="the agent online",
    )
    yield {"manager": manager, "agent": agent}
    agent.terminate()
    manager.terminate()


def test_fleet_state_and_task_metrics(stack: dict[str, Any]) -> None:
    manager: Manager = stack["manager"]
    families = scrape(manager.url)
    assert value(families, "corral_nodes", status="online") == 1
    assert value(families, "corral_nodes", status="offline") == 0
    assert value(families, "corral_nodes_ready") == 1
    node_id = next(n["id"] for n in manager.get("/api/task/node").json()["nodes"])
    # An empty queue has no series of its own (collectors.NODE_SERIES_LIMIT): the total counts it.
    assert "corral_node_queue_length" not in families or all(
        labels.get("node") != node_id for _n, labels, _v in families["corral_node_queue_length"]
    )
    assert value(families, "corral_node_queue_jobs") == 0
    before = {s: value(families, "corral_fleet_tasks", status=s) for s in ("completed", "failed")}

    ok = requests.post(f"{manager.url}/api/tasks?wait=30", json={"name": "ok", "command": "echo hi", "targets": ["*"]},
                       timeout=40)  # fmt: skip
    bad = requests.post(f"{manager.url}/api/tasks?wait=30", json={"name": "bad", "command": "exit 4", "targets": ["*"]},
                        timeout=40)  # fmt: skip
    assert ok.json()["status"] == "completed" and bad.json()["status"] == "failed", (ok.text, bad.text)

    families = scrape(manager.url)
    assert value(families, "corral_fleet_tasks", status="completed") == before["completed"] + 1
    assert value(families, "corral_fleet_tasks", status="failed") == before["failed"] + 1
    assert value(families, "corral_fleet_task_hosts", status="succeeded") >= 1
    assert value(families, "corral_fleet_task_hosts", status="failed") >= 1
    # Observed by the duties (the launcher's process) as each task ended, summed with the workers' samples.
    count = "corral_fleet_task_duration_seconds_count"
    assert value(families, "corral_fleet_task_duration_seconds", count, status="completed") >= 1
    assert value(families, "corral_fleet_task_duration_seconds", count, status="failed") >= 1
    assert value(families, "corral_fleet_task_duration_seconds", "corral_fleet_task_duration_seconds_bucket",
                 status="failed", le="+Inf") >= 1  # fmt: skip
    # Observed by the worker that answered the POST: the job's enqueueing.
    assert value(families, "corral_dispatch_seconds", "corral_dispatch_seconds_count", job="run_command") >= 2
    assert value(families, "corral_report_streams_backlog", state="pending") >= 0
    assert value(families, "corral_report_streams_behind") >= 0


def test_request_counter_adds_up_every_worker(stack: dict[str, Any]) -> None:
    manager: Manager = stack["manager"]
    route = "/api/tasks/<task_id>"
    requests_made = 60
    for i in range(requests_made):
        # A connection each (no session): the kernel spreads them over the workers.
        assert requests.get(f"{manager.url}/api/tasks/no-such-{i}", timeout=10).status_code == 404
    counter_files = list(Path(manager.db_path.parent / f"prometheus-{manager.port}").glob("counter_*.db"))
    assert len(counter_files) >= 2, counter_files  # several processes counted
    # Whichever worker answers a scrape, it adds up all of them.
    for _ in range(2 * WORKERS):
        families = scrape(manager.url)
        total = value(
            families, "corral_http_requests", "corral_http_requests_total", route=route, method="GET", code="404"
        )
        assert total == requests_made
        duration = value(families, "corral_http_request_duration_seconds", "corral_http_request_duration_seconds_count",
                         route=route, method="GET")  # fmt: skip
        assert duration == requests_made
    # No raw paths as labels, and /metrics does not count itself.
    routes = {labels["route"] for _n, labels, _v in families["corral_http_requests"]}
    assert not any("no-such" in r for r in routes) and api.METRICS_PATH not in routes


def test_unmatched_paths_share_one_series(stack: dict[str, Any]) -> None:
    manager: Manager = stack["manager"]
    for path in ("/nope-a", "/nope-b/c"):
        assert manager.get(path).status_code == 404
    families = scrape(manager.url)
    routes = {labels["route"] for _n, labels, _v in families["corral_http_requests"]}
    assert "unmatched" in routes and not any(r.startswith("/nope") for r in routes)


def test_manager_processes_are_all_described(stack: dict[str, Any]) -> None:
    families = scrape(stack["manager"].url)
    roles = [labels["role"] for _n, labels, _v in families["corral_process_resident_memory_bytes"]]
    assert roles.count("worker") == WORKERS and roles.count("launcher") == 1 and roles.count("gunicorn") == 1
    assert any(re.match("redis", role) for role in roles)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    tmp = tmp_path_factory.mktemp("metrics-token")
    manager = Manager(tmp, isolated_env(tmp), ["--api-token", TOKEN])
    manager.start()
    yield manager
    manager.terminate()


def test_token_required_when_configured(guarded: Manager) -> None:
    for headers in ({}, api.bearer("wrong")):
        answer = requests.get(guarded.url + api.METRICS_PATH, headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json() == {"error": "Missing or invalid API token"}
    families = scrape(guarded.url, headers=api.bearer(TOKEN))
    assert value(families, "corral_nodes", status="online") == 0
