"""Session-wide pytest fixtures for the real outside engines of tests/engines.py (registered in conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines import HttpFileServer, PodmanEngine, SshServer, build_busybox_image_tar


@pytest.fixture(scope="session")
def podman_engine() -> Iterator[PodmanEngine]:
    """One private podman Docker-API service for the session; `.docker_host`, `.env`, `.client()`."""
    engine = PodmanEngine().start()
    yield engine
    engine.stop()


@pytest.fixture
def podman_clean(podman_engine: PodmanEngine) -> Iterator[PodmanEngine]:
    """The session's podman with no containers and no images, before and after the test."""
    _empty(podman_engine)
    yield podman_engine
    _empty(podman_engine)


def _empty(engine: PodmanEngine) -> None:
    engine.remove_all_containers()
    client = engine.client()
    try:
        for image in client.images.list():
            client.images.remove(image.id, force=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def busybox_image_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A docker-archive tar of `corral-test/busybox:1` (static busybox; default command sleeps an hour)."""
    return build_busybox_image_tar(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def image_http(busybox_image_tar: Path) -> Iterator[HttpFileServer]:
    """Serves the image tar's directory: `image_http.url(busybox_image_tar.name)` is its image_url."""
    server = HttpFileServer(busybox_image_tar.parent)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    """A real sshd on a loopback port; `.sftp_url(path)`, `.client_key_path`, `.known_hosts_path`."""
    server = SshServer().start()
    yield server
    server.stop()
