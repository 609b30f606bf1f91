"""Self-tests of the test engines: podman through the Docker SDK, the image tar, HTTP and SFTP serving."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import paramiko
import pytest

from tests.engines import BUSYBOX_IMAGE_NAME, HttpFileServer, PodmanEngine, SshServer
from tests.support import pid_alive, wait_until


def test_busybox_tar_loads_and_runs_a_limited_container(
    podman_clean: PodmanEngine, busybox_image_tar: Path, tmp_path: Path
) -> None:
    import docker

    client = podman_clean.client()
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(BUSYBOX_IMAGE_NAME)
    images = client.images.load(busybox_image_tar.read_bytes())
    assert any(tag.endswith(BUSYBOX_IMAGE_NAME) for image in images for tag in image.tags)

    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "app.conf").write_text("greeting=hello\n")
    container = client.containers.create(
        BUSYBOX_IMAGE_NAME,
        name="corral-engine-selftest",
        init=True,
        environment={"GREETING": "hello"},
        volumes={str(config_dir): {"bind": "/etc/app", "mode": "ro"}},
        nano_cpus=500_000_000,
        mem_limit=64 * 1024 * 1024,
        labels={"corral.business": "b1", "corral.component": "c1"},
    )
    container.start()
    container.reload()
    assert container.status == "running"
    assert container.labels["corral.component"] == "c1"
    assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert container.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    host_pid = container.attrs["State"]["Pid"]
    assert pid_alive(host_pid)

    assert container.exec_run(["cat", "/etc/app/app.conf"]).output == b"greeting=hello\n"
    assert b"GREETING=hello" in container.exec_run(["env"]).output
    wait_until(lambda: b"corral-test-busybox up" in container.logs(), timeout=10, what="container's first log line")

    stats = container.stats(stream=False)
    assert stats["memory_stats"]["usage"] > 0
    assert stats["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0

    # init=True puts catatonit in front, so SIGTERM ends `sleep` at once instead of waiting for the timeout.
    container.stop(timeout=10)
    container.reload()
    assert container.status == "exited"
    assert not pid_alive(host_pid)
    container.remove()
    assert client.containers.list(all=True) == []
    client.close()


def test_http_file_server_serves_the_tar(busybox_image_tar: Path, image_http: HttpFileServer) -> None:
    with urllib.request.urlopen(image_http.url(busybox_image_tar.name), timeout=10) as response:
        body = response.read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(busybox_image_tar.read_bytes()).digest()
    assert f"/{busybox_image_tar.name}" in image_http.served


def test_sftp_fetch_checks_the_host_key(sshd_server: SshServer, tmp_path: Path) -> None:
    remote = tmp_path / "payload.bin"
    remote.write_bytes(b"corral" * 1000)
    url = sshd_server.sftp_url(remote)
    assert url == f"sftp://{sshd_server.user}@127.0.0.1:{sshd_server.port}{remote}"

    login = {
        "port": sshd_server.port,
        "username": sshd_server.user,
        "key_filename": str(sshd_server.client_key_path),
        "look_for_keys": False,
        "allow_agent": False,
        "timeout": 10,
    }
    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd_server.known_hosts_path))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", **login)
    try:
        with client.open_sftp() as sftp, sftp.open(str(remote)) as f:
            assert f.read() == remote.read_bytes()
    finally:
        client.close()

    # The same server with an unknown host key must be refused: the known_hosts file is what is trusted.
    stranger = paramiko.SSHClient()
    stranger.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        stranger.connect("127.0.0.1", **login)
    stranger.close()
