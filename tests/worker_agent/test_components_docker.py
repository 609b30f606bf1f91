"""Docker components against a real podman Docker-API engine: image over HTTP and SFTP, container with
labels, env, config files and limits, usage, exit, stop, re-adoption after an agent restart, and failures."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
import redis as redis_lib

from shared import container_labels
from tests.engines import (
    BUSYBOX_IMAGE_NAME,
    HttpFileServer,
    PodmanEngine,
    SshServer,
    UnixSocketRelay,
    build_busybox_image_tar,
)
from tests.support import wait_until
from tests.worker_agent.components_support import make_manager, reports, status_is, statuses, stop_request
from worker_agent.components.image_fetch import SftpSettings
from worker_agent.components.manager import ComponentManager
from worker_agent.components.recovery import LOST_ERROR

SHELL = "/bin/sh"


def docker_spec(component_id: str, image_url: str | None, generation: int = 1, **extra: Any) -> dict[str, Any]:
    """A ComponentSpecSchema payload of a docker component of business biz-1."""
    return {
        "business_id": "biz-1",
        "component_id": component_id,
        "component_name": f"name of {component_id}",
        "type": "docker",
        "generation": generation,
        "image_name": BUSYBOX_IMAGE_NAME,
        "image_url": image_url,
        **extra,
    }


@dataclass
class FreshImage:
    """An image the engine does not have yet, as a tar in a directory of its own, served over HTTP."""

    name: str
    tar: Path
    url: str


@pytest.fixture
def fresh_image(tmp_path: Path, podman_engine: PodmanEngine) -> Iterator[FreshImage]:
    """A new image name (same busybox layer, so loading it is quick), untagged from the engine afterwards."""
    name = f"corral-test/fresh-{uuid.uuid4().hex[:8]}:1"
    tar = build_busybox_image_tar(tmp_path / "images", image_name=name)
    server = HttpFileServer(tar.parent)
    yield FreshImage(name, tar, server.url(tar.name))
    server.stop()
    c = podman_engine.client()
    try:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            c.images.remove(name)
    finally:
        c.close()


@pytest.fixture
def client(podman_engine: PodmanEngine) -> Iterator[docker.DockerClient]:
    c = podman_engine.client()
    yield c
    c.close()


@pytest.fixture
def new_manager(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, podman_engine: PodmanEngine
) -> Callable[[], ComponentManager]:
    """Makes a ComponentManager of the test's node on the engine: each call is the agent (re)started."""
    return lambda: make_manager(data_dir, node_id, redis_client, docker_host=podman_engine.docker_host)


@pytest.fixture
def components(
    new_manager: Callable[[], ComponentManager], node_id: str, podman_engine: PodmanEngine
) -> Iterator[ComponentManager]:
    manager = new_manager()
    manager.recover()
    manager.start_monitor()
    yield manager
    manager.close()
    client = podman_engine.client()
    try:
        for container in ours(client, node_id):
            container.remove(force=True)
    finally:
        client.close()


def ours(client: docker.DockerClient, node_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": f"{container_labels.NODE}={node_id}"})


def test_deploy_from_http_runs_a_labelled_container_with_env_files_and_limits(
    components: ComponentManager,
    client: docker.DockerClient,
    redis_client: redis_lib.Redis,
    node_id: str,
    fresh_image: FreshImage,
) -> None:
    payload = docker_spec(
        "web",
        fresh_image.url,
        image_name=fresh_image.name,
        command=SHELL,
        args=["-c", 'echo "greeting=$GREETING $CORRAL_COMPONENT_ID"; cat /etc/web/app.conf; exec sleep 3600'],
        environment_variables={"GREETING": "hello"},
        config_files=[{"path": "/etc/web/app.conf", "content": "key=value\n"}],
        resource_requirements={"cpu_cores": 0.5, "memory_mb": 64, "gpu": False},
    )
    components.deploy(payload)

    running = wait_until(lambda: status_is(redis_client, "web", "running"), timeout=30, what="web to run")
    assert statuses(redis_client, "web") == ["downloading", "starting", "running"]
    container = client.containers.get(running["container_id"])
    assert container.name == "corral-biz-1-web-1" and container.status == "running"
    labels = container.labels
    assert labels[container_labels.BUSINESS] == "biz-1" and labels[container_labels.COMPONENT] == "web"
    assert labels[container_labels.GENERATION] == "1" and labels[container_labels.NODE] == node_id
    host_config = container.attrs["HostConfig"]
    assert host_config["NanoCpus"] == 500_000_000 and host_config["Memory"] == 64 * 1024 * 1024
    wait_until(lambda: b"key=value" in container.logs(), what="the container's output")
    assert container.logs().decode().splitlines() == ["greeting=hello web", "key=value"]

    usage = wait_until(
        lambda: [r for r in reports(redis_client, "web") if r["resource_usage"]][1:], what="usage reports"
    )
    assert usage[-1]["status"] == "running" and usage[-1]["resource_usage"]["memory_mb"] > 0
    assert usage[-1]["container_id"] == running["container_id"]

    components.stop(stop_request("web", grace_seconds=5))
    stopped = wait_until(lambda: status_is(redis_client, "web", "stopped"), what="web to stop")
    assert stopped["exit_code"] == 143  # SIGTERM through init, well within the grace
    assert ours(client, node_id) == []


def test_a_restarted_agent_adopts_the_same_container_and_settles_one_that_died_meanwhile(
    components: ComponentManager,
    client: docker.DockerClient,
    redis_client: redis_lib.Redis,
    node_id: str,
    new_manager: Callable[[], ComponentManager],
    podman_engine: PodmanEngine,
) -> None:
    ensure_busybox(podman_engine)
    components.deploy(docker_spec("db", None))
    components.deploy(docker_spec("cache", None))
    db = wait_until(lambda: status_is(redis_client, "db", "running"), timeout=30, what="db to run")
    cache = wait_until(lambda: status_is(redis_client, "cache", "running"), timeout=30, what="cache to run")
    components.close()  # the agent goes away; its containers do not
    client.containers.get(cache["container_id"]).kill()  # one dies while the agent is down
    wait_until(lambda: client.containers.get(cache["container_id"]).status == "exited", what="cache to exit")

    second = new_manager()
    second.recover()
    second.start_monitor()
    try:
        assert second.current("biz-1", "db").container_id == db["container_id"]
        assert statuses(redis_client, "db")[-2:] == ["running", "running"]  # re-announced
        lost = status_is(redis_client, "cache", "failed")
        assert lost and lost["exit_code"] == 137 and lost["error_message"].startswith(LOST_ERROR)
        second.deploy(docker_spec("db", None))  # redelivered: no-op
        wait_until(second.idle, what="work to settle")
        assert sorted(c.id for c in ours(client, node_id)) == sorted([db["container_id"], cache["container_id"]])

        second.stop(stop_request("cache"))  # removes the dead one, keeps its exit code
        stopped = wait_until(lambda: status_is(redis_client, "cache", "stopped"), what="cache removed")
        assert stopped["exit_code"] == 137
        assert [c.id for c in ours(client, node_id)] == [db["container_id"]]
    finally:
        second.close()


def test_containers_are_found_by_their_labels_when_the_state_file_is_lost(
    components: ComponentManager,
    client: docker.DockerClient,
    data_dir: Path,
    redis_client: redis_lib.Redis,
    node_id: str,
    new_manager: Callable[[], ComponentManager],
    podman_engine: PodmanEngine,
) -> None:
    ensure_busybox(podman_engine)
    components.deploy(docker_spec("api", None, generation=1))
    wait_until(lambda: status_is(redis_client, "api", "running", 1), timeout=30, what="gen 1")
    components.close()
    (data_dir / "components.json").unlink()  # gen 1's record is lost...

    unaware = new_manager()  # ...so this agent starts gen 2 beside it (as a crash mid-replacement would leave it)
    unaware.start_monitor()
    unaware.deploy(docker_spec("api", None, generation=2))
    new = wait_until(lambda: status_is(redis_client, "api", "running", 2), timeout=30, what="gen 2")
    unaware.close()
    assert len(ours(client, node_id)) == 2

    restarted = new_manager()
    restarted.recover()  # the leftover older generation goes, gen 2 is adopted
    restarted.close()
    assert [c.id for c in ours(client, node_id)] == [new["container_id"]]
    assert statuses(redis_client, "api", 2)[-2:] == ["running", "running"]

    (data_dir / "components.json").unlink()
    amnesiac = new_manager()
    amnesiac.recover()  # no record at all: adopted by its labels, same container
    try:
        rec = amnesiac.current("biz-1", "api")
        assert (rec.generation, rec.container_id, rec.state) == (2, new["container_id"], "running")
        assert statuses(redis_client, "api", 2)[-1:] == ["running"]
        amnesiac.stop(stop_request("api"))
        wait_until(lambda: status_is(redis_client, "api", "stopped", 2), what="the adopted container to stop")
        assert ours(client, node_id) == []
    finally:
        amnesiac.close()


def ensure_busybox(engine: PodmanEngine) -> None:
    """Make sure the busybox image is on the engine (a test without image_url needs it there)."""
    c = engine.client()
    try:
        try:
            c.images.get(BUSYBOX_IMAGE_NAME)
        except docker.errors.ImageNotFound:
            with tempfile.TemporaryDirectory() as tmp:
                c.images.load(build_busybox_image_tar(Path(tmp)).read_bytes())
    finally:
        c.close()


def test_a_container_that_exits_fails_with_its_code_and_log(
    components: ComponentManager, redis_client: redis_lib.Redis, podman_engine: PodmanEngine
) -> None:
    ensure_busybox(podman_engine)
    components.deploy(docker_spec("crash", None, command=SHELL, args=["-c", "echo missing config >&2; exit 5"]))
    failed = wait_until(lambda: status_is(redis_client, "crash", "failed"), timeout=20, what="crash to fail")
    assert statuses(redis_client, "crash") == ["starting", "running", "failed"]
    assert failed["exit_code"] == 5 and failed["error_message"] == "container exited with code 5; log: missing config"


def test_image_fetch_failures_fail_the_component_with_the_reason(
    components: ComponentManager, redis_client: redis_lib.Redis, fresh_image: FreshImage
) -> None:
    missing = fresh_image.url.rsplit("/", 1)[0] + "/no-such.tar"
    components.deploy(docker_spec("nofile", missing, image_name=fresh_image.name))
    failed = wait_until(lambda: status_is(redis_client, "nofile", "failed"), timeout=20, what="nofile to fail")
    assert statuses(redis_client, "nofile") == ["downloading", "failed"]
    assert "HTTP 404" in failed["error_message"] and "no-such.tar" in failed["error_message"]

    components.deploy(docker_spec("wrongname", fresh_image.url, image_name="corral-test/other:2"))
    failed = wait_until(lambda: status_is(redis_client, "wrongname", "failed"), timeout=20, what="wrongname")
    assert failed["error_message"].startswith("image corral-test/other:2 not in the loaded tar")

    components.deploy(docker_spec("noimage", None, image_name="corral-test/absent:1"))
    failed = wait_until(lambda: status_is(redis_client, "noimage", "failed"), timeout=20, what="noimage")
    assert "no image_url" in failed["error_message"]


def test_sftp_fetch_checks_the_host_key(
    data_dir: Path,
    node_id: str,
    redis_client: redis_lib.Redis,
    podman_engine: PodmanEngine,
    sshd_server: SshServer,
    fresh_image: FreshImage,
    tmp_path: Path,
) -> None:
    url = sshd_server.sftp_url(str(fresh_image.tar))
    wrong_known_hosts = tmp_path / "known_hosts"
    host = sshd_server.known_hosts_path.read_text().split()[0]
    # The right host name with another key: the real one must be refused.
    wrong_known_hosts.write_text(
        f"{host} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    for known_hosts, component_id in ((wrong_known_hosts, "badkey"), (sshd_server.known_hosts_path, "sftp")):
        sftp = SftpSettings(sshd_server.client_key_path, known_hosts)
        manager = make_manager(data_dir, node_id, redis_client, docker_host=podman_engine.docker_host, sftp=sftp)
        manager.start_monitor()
        try:
            manager.deploy(docker_spec(component_id, url, image_name=fresh_image.name))
            wait_until(
                lambda cid=component_id: statuses(redis_client, cid)[-1:] in (["failed"], ["running"]),
                timeout=30,
                what=f"{component_id} to settle",
            )
            manager.stop(stop_request(component_id))
            wait_until(lambda cid=component_id: status_is(redis_client, cid, "stopped"), what=f"{component_id} gone")
        finally:
            manager.close()
    bad = [r for r in reports(redis_client, "badkey") if r["status"] == "failed"]
    assert bad and "host key" in bad[0]["error_message"]
    assert statuses(redis_client, "sftp") == ["downloading", "starting", "running", "stopping", "stopped"]


def test_an_unreachable_engine_fails_the_component_and_not_the_agent(
    data_dir: Path, node_id: str, redis_client: redis_lib.Redis, tmp_path: Path
) -> None:
    manager = make_manager(data_dir, node_id, redis_client, docker_host=f"unix://{tmp_path}/no-docker.sock")
    manager.start_monitor()
    try:
        manager.deploy(docker_spec("lonely", "http://127.0.0.1:1/x.tar"))
        failed = wait_until(lambda: status_is(redis_client, "lonely", "failed"), what="lonely to fail")
        assert failed["error_message"].startswith(f"docker engine unreachable at unix://{tmp_path}/no-docker.sock")
        manager.deploy({**docker_spec("proc", None), "type": "process", "command": "exec sleep 300"})
        wait_until(lambda: status_is(redis_client, "proc", "running"), what="a process component to still run")
        manager.stop(stop_request("proc"))
        wait_until(lambda: status_is(redis_client, "proc", "stopped"), what="proc to stop")
    finally:
        manager.close()


class _Trickle(BaseHTTPRequestHandler):
    """Announces a big file and sends it a little at a time: a download that would take minutes."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(100 * 1024 * 1024))
        self.end_headers()
        try:
            while not self.server.stopping.is_set():  # type: ignore[attr-defined]
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the agent hung up: what the test wants

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def trickle_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow.tar"
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_stop_during_a_long_download_ends_it_at_once(
    components: ComponentManager,
    client: docker.DockerClient,
    data_dir: Path,
    node_id: str,
    redis_client: redis_lib.Redis,
    trickle_url: str,
) -> None:
    components.deploy(docker_spec("slow", trickle_url, image_name="corral-test/slow:1"))
    wait_until(lambda: status_is(redis_client, "slow", "downloading"), what="the download to begin")
    wait_until(lambda: list((data_dir / "images").glob("*.part")), what="bytes to arrive")

    asked = time.monotonic()
    components.stop(stop_request("slow"))
    stopped = wait_until(lambda: status_is(redis_client, "slow", "stopped"), what="slow to stop")
    assert time.monotonic() - asked < 3
    assert statuses(redis_client, "slow") == ["downloading", "stopping", "stopped"]
    assert stopped["container_id"] is None and ours(client, node_id) == []
    wait_until(components.idle, what="the download to be dropped")
    assert list((data_dir / "images").iterdir()) == []


def test_a_stop_the_engine_refuses_is_tried_again_until_the_container_is_gone(
    data_dir: Path,
    node_id: str,
    redis_client: redis_lib.Redis,
    podman_engine: PodmanEngine,
    client: docker.DockerClient,
    image_http: HttpFileServer,
    busybox_image_tar: Path,
    tmp_path: Path,
) -> None:
    relay = UnixSocketRelay(tmp_path / "relay.sock", podman_engine.socket_path)
    manager = make_manager(data_dir, node_id, redis_client, docker_host=relay.docker_host)
    manager.start_monitor()
    try:
        manager.deploy(docker_spec("stubborn", image_http.url(busybox_image_tar.name)))
        running = wait_until(lambda: status_is(redis_client, "stubborn", "running"), timeout=30, what="it to run")

        relay.cut()  # the engine is down, as the agent sees it
        manager.stop(stop_request("stubborn", grace_seconds=2))
        refused = wait_until(
            lambda: [r for r in reports(redis_client, "stubborn") if r["status"] == "stopping" and r["error_message"]][
                1:
            ],
            timeout=15,
            what="a stop refused, then tried again",
        )
        assert refused[0]["error_message"].startswith("could not stop it, trying again: ")
        assert client.containers.get(running["container_id"]).status == "running"
        assert not status_is(redis_client, "stubborn", "failed")

        relay.restore()
        stopped = wait_until(
            lambda: status_is(redis_client, "stubborn", "stopped"), timeout=30, what="the stop to succeed at last"
        )
        assert stopped["error_message"] is None
        assert ours(client, node_id) == []
        assert statuses(redis_client, "stubborn")[-1] == "stopped"
    finally:
        manager.close()
        relay.close()
