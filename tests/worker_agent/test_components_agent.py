"""The real agent process with business components: jobs from its queue, SIGTERM leaves components running,
a restarted agent re-adopts the same process and the same container."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from shared import jobs as job_names
from tests.engines import HttpFileServer, PodmanEngine
from tests.support import pid_alive, wait_until
from tests.worker_agent.components_support import (
    reports,
    spec,
    status_is,
    statuses,
    stop_request,
)
from tests.worker_agent.conftest import node_queue
from tests.worker_agent.test_agent import AgentProcess
from tests.worker_agent.test_components_docker import docker_spec


@pytest.fixture
def agents(data_dir: Path, podman_engine: PodmanEngine) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()
    podman_engine.remove_all_containers()


def test_components_outlive_the_agent_and_are_adopted_after_a_restart(
    redis_url: str,
    redis_client: redis_lib.Redis,
    data_dir: Path,
    tmp_path: Path,
    agents: list[AgentProcess],
    podman_engine: PodmanEngine,
    image_http: HttpFileServer,
    busybox_image_tar: Path,
) -> None:
    args = ("--redis-url", redis_url, "--data-dir", str(data_dir), "--docker-host", podman_engine.docker_host)
    agent = AgentProcess(tmp_path, *args)
    agents.append(agent)
    wait_until(agent.joined, what="the agent to work its queue")
    node_id = (data_dir / "node-id").read_text().strip()
    queue = node_queue(redis_client, node_id)

    queue.enqueue(job_names.DEPLOY_COMPONENT, spec("proc", "exec sleep 300"))
    queue.enqueue(job_names.DEPLOY_COMPONENT, docker_spec("box", image_http.url(busybox_image_tar.name)))
    proc = wait_until(lambda: status_is(redis_client, "proc", "running"), what="the process component")
    box = wait_until(lambda: status_is(redis_client, "box", "running"), timeout=30, what="the docker component")
    client = podman_engine.client()
    try:
        # Usage every interval (0.5 s here) for both.
        for cid in ("proc", "box"):
            wait_until(lambda cid=cid: len(usage_reports(redis_client, cid)) >= 2, what=f"{cid} usage")

        assert agent.terminate() == 0
        assert pid_alive(proc["pid"]), "the process component must outlive the agent"
        assert client.containers.get(box["container_id"]).status == "running"

        restarted = AgentProcess(tmp_path, *args)
        agents.append(restarted)
        wait_until(restarted.joined, what="the restarted agent")
        wait_until(lambda: statuses(redis_client, "proc")[-2:] == ["running", "running"], what="proc re-announced")
        wait_until(lambda: statuses(redis_client, "box")[-2:] == ["running", "running"], what="box re-announced")
        assert status_is(redis_client, "proc", "running")["pid"] == proc["pid"]
        assert status_is(redis_client, "box", "running")["container_id"] == box["container_id"]

        queue.enqueue(job_names.STOP_COMPONENT, stop_request("proc"))
        queue.enqueue(job_names.STOP_COMPONENT, stop_request("box"))
        assert wait_until(lambda: status_is(redis_client, "proc", "stopped"))["exit_code"] == -signal.SIGTERM
        wait_until(lambda: status_is(redis_client, "box", "stopped"), what="box to stop")
        assert not pid_alive(proc["pid"])
        assert client.containers.list(all=True, filters={"id": box["container_id"]}) == []
        assert restarted.terminate() == 0
        assert "Traceback" not in restarted.log and "Traceback" not in agent.log
    finally:
        client.close()


def usage_reports(redis: redis_lib.Redis, component_id: str) -> list[dict]:
    return [r for r in reports(redis, component_id) if r["resource_usage"] is not None]


def test_an_idle_agent_does_not_load_the_docker_sdk() -> None:
    code = (
        "import sys; import worker_agent.cli, worker_agent.agent;"
        "print(sorted(m for m in ('docker', 'paramiko', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"
