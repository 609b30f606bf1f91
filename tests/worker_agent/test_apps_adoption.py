"""An agent restart is not a node loss: app instances outlive the agent and a new one on the same data dir adopts
them with the same pid, ports, restart count and health, and goes on reporting and obeying stops."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis as redis_lib

from shared import jobs as job_names
from tests.support import pid_alive, wait_until
from tests.worker_agent.conftest import node_queue
from tests.worker_agent.test_agent import AgentProcess
from worker_agent import jobs

from .apps_support import check, make_instances, reports, running, spec, state_is, stop

SERVER = f"{sys.executable} -m http.server --bind 127.0.0.1"
FLAKY_ONCE = f"if [ -f started ]; then exec {SERVER} $PORT0; else touch started; exit 1; fi"
"""Fails its first run, then serves: one restart, then healthy."""


def test_a_new_manager_adopts_the_instances_with_pid_ports_restarts_and_health(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    payload = spec("keep", FLAKY_ONCE, ports=[0], health_checks=[check("HTTP", interval_seconds=0.5)])
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(payload)
        before = wait_until(
            lambda: state_is(redis_client, "keep", "running", health="healthy", restarts=1),
            timeout=30,
            what="healthy after one restart",
        )
    assert pid_alive(before["pid"])  # the closed manager left it running
    count = len(reports(redis_client, "keep"))

    with running(make_instances(data_dir, node_id, redis_client)) as again:
        after = wait_until(lambda: len(reports(redis_client, "keep")) > count and reports(redis_client, "keep")[-1])
        assert after["state"] == "running"
        assert (after["pid"], after["ports"], after["restarts"]) == (before["pid"], before["ports"], 1)
        assert after["health"] == "healthy"  # the last result survived the restart
        assert after["started_at"] == before["started_at"]
        assert again.ports.held() == {before["ports"][0]: "keep"}
        # Still watched: its checks run on, and its death is a restart.
        wait_until(lambda: reports(redis_client, "keep")[-1]["last_check"]["at"] > before["last_check"]["at"])
        # The app (the launch script's child) dies; the script, no child of this manager, leaves its status.
        (app,) = psutil.Process(before["pid"]).children()
        app.send_signal(signal.SIGKILL)
        restarted = wait_until(
            lambda: state_is(redis_client, "keep", "running", restarts=2), timeout=30, what="restarted after a kill"
        )
        assert restarted["pid"] != before["pid"]
        assert [r["restart"]["reason"] for r in reports(redis_client, "keep") if r["restart"]][-1] == (
            "killed by signal 9"
        )
        jobs.stop_instance(stop("keep", grace_seconds=2))
        wait_until(lambda: state_is(redis_client, "keep", "stopped"))
        assert not pid_alive(restarted["pid"])


def test_an_instance_that_died_while_the_agent_was_away_restarts(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    with running(make_instances(data_dir, node_id, redis_client)):
        jobs.run_instance(spec("dies", "exec sleep 300"))
        first = wait_until(lambda: state_is(redis_client, "dies", "running"))
    os.killpg(first["pid"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(first["pid"]))
    with running(make_instances(data_dir, node_id, redis_client)):
        again = wait_until(lambda: state_is(redis_client, "dies", "running", restarts=1), timeout=30)
    assert again["pid"] != first["pid"]


@pytest.fixture
def agents(data_dir: Path) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


def test_the_agent_process_runs_instances_and_adopts_them_after_sigterm(
    redis_url: str, redis_client: redis_lib.Redis, data_dir: Path, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    args = ("--redis-url", redis_url, "--data-dir", str(data_dir))
    agent = AgentProcess(tmp_path, *args)
    agents.append(agent)
    wait_until(agent.joined, timeout=30, what="the agent to work its queue")
    node_id = (data_dir / "node-id").read_text().strip()
    queue = node_queue(redis_client, node_id)
    queue.enqueue(
        job_names.RUN_INSTANCE,
        {"app": "web", "instance_id": "svc", "version": 2, "command": f"exec {SERVER} $PORT0", "ports": [0]},
    )
    first = wait_until(lambda: state_is(redis_client, "svc", "running"), timeout=30, what="running via the agent")
    assert first["version"] == 2 and first["node_id"] == node_id

    assert agent.terminate() == 0
    assert pid_alive(first["pid"])  # SIGTERM left the instance running
    count = len(reports(redis_client, "svc"))
    agent = AgentProcess(tmp_path, *args)
    agents.append(agent)
    adopted = wait_until(
        lambda: len(reports(redis_client, "svc")) > count and state_is(redis_client, "svc", "running"),
        timeout=30,
        what="the adopted instance reported",
    )
    assert (adopted["pid"], adopted["ports"], adopted["restarts"]) == (first["pid"], first["ports"], 0)

    queue.enqueue(job_names.STOP_INSTANCE, {"app": "web", "instance_id": "svc", "grace_seconds": 5})
    wait_until(lambda: state_is(redis_client, "svc", "stopped"), timeout=30, what="stopped via the agent")
    assert not pid_alive(first["pid"])
