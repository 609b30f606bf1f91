"""A component's sealed secret env on the agent: opened at the start with the node's job key, kept sealed in
components.json; a process gets it in its environment, a docker container at its create (where `docker
inspect` shows it: the documented limit); without the key the component fails, naming no value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from shared import container_labels, job_signing, secret_env
from tests.engines import PodmanEngine
from tests.support import wait_until
from tests.worker_agent.components_support import make_manager, spec, status_is
from tests.worker_agent.test_components_docker import docker_spec, ensure_busybox
from worker_agent.components.manager import ComponentManager

SECRET = "component-secret-6a0e"


def _sealed(node_id: str, component_id: str, generation: int = 1) -> str:
    key = job_signing.node_key(b"k" * 32, node_id)
    return secret_env.seal(key, secret_env.component_context("biz-1", component_id, generation), {"API_KEY": SECRET})


@pytest.fixture
def keyed(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> Iterator[ComponentManager]:
    manager = make_manager(data_dir, node_id, redis_client, key=lambda: job_signing.node_key(b"k" * 32, node_id))
    manager.recover()
    manager.start_monitor()
    yield manager
    manager.close()


def test_a_process_component_gets_its_secret_and_components_json_keeps_it_sealed(
    keyed: ComponentManager, data_dir: Path, node_id: str, redis_client: redis_lib.Redis, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sealed = _sealed(node_id, "api")
    keyed.deploy(spec("api", f'echo "$API_KEY" | rev > {out}; exec sleep 30', secret_env=sealed))
    wait_until(lambda: status_is(redis_client, "api", "running"), timeout=20, what="api running")
    wait_until(lambda: out.exists() and out.read_text() == SECRET[::-1] + "\n", what="the secret")
    records = (data_dir / "components.json").read_text()
    assert sealed in records and SECRET not in records
    # Sealed for another generation: it does not open, and the component fails without starting.
    keyed.deploy(spec("api2", "echo started; exec sleep 30", secret_env=_sealed(node_id, "api2", generation=2)))
    failed = wait_until(lambda: status_is(redis_client, "api2", "failed"), timeout=20, what="api2 failed")
    assert "does not open" in failed["error_message"] and SECRET not in failed["error_message"]


def test_without_the_job_key_a_component_fails_naming_no_value(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis
) -> None:
    manager = make_manager(data_dir, node_id, redis_client)  # no key: an agent without a manager
    manager.recover()
    manager.start_monitor()
    try:
        manager.deploy(spec("api", "echo started; exec sleep 30", secret_env=_sealed(node_id, "api")))
        failed = wait_until(lambda: status_is(redis_client, "api", "failed"), timeout=20, what="api failed")
        assert "no job key" in failed["error_message"]
    finally:
        manager.close()


def test_a_docker_component_gets_its_secret_at_the_container_create(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, podman_engine: PodmanEngine
) -> None:
    ensure_busybox(podman_engine)
    key = job_signing.node_key(b"k" * 32, node_id)
    manager = make_manager(data_dir, node_id, redis_client, docker_host=podman_engine.docker_host, key=lambda: key)
    manager.recover()
    manager.start_monitor()
    client = podman_engine.client()
    try:
        args = ["-c", 'echo "len=${#API_KEY} rev=$(echo "$API_KEY" | rev)"; exec sleep 3600']
        manager.deploy(docker_spec("box", None, command="/bin/sh", args=args, secret_env=_sealed(node_id, "box")))
        running = wait_until(lambda: status_is(redis_client, "box", "running"), timeout=30, what="box running")
        container = client.containers.get(running["container_id"])
        wait_until(lambda: b"len=" in container.logs(), what="the container's output")
        assert container.logs().decode().splitlines() == [f"len={len(SECRET)} rev={SECRET[::-1]}"]
        # The documented limit: the engine keeps a container's environment, so inspecting it shows the value.
        assert f"API_KEY={SECRET}" in container.attrs["Config"]["Env"]
        assert SECRET not in (data_dir / "components.json").read_text()
    finally:
        manager.close()
        for container in client.containers.list(all=True, filters={"label": f"{container_labels.NODE}={node_id}"}):
            container.remove(force=True)
        client.close()
