"""The private Redis with TLS (the manager's --tls-cert): TLS-only on its port, and so again after a restart
(RedisKeeper restarts it through PrivateRedis.start, which opens the tls-port, never a plain one)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from manager_api.launcher.redis_server import PrivateRedis
from shared import tls
from tests.tls_support import TlsFiles, make_tls_files


@pytest.fixture
def files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def private(tmp_path: Path, files: TlsFiles) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, tls=(str(files.cert), str(files.key), str(files.ca)))
    server.start()
    yield server
    server.stop()


def assert_tls_only(server: PrivateRedis, files: TlsFiles) -> None:
    assert server.url.startswith("rediss://")
    client = tls.redis_from_url(server.url, str(files.ca), socket_timeout=5)
    assert client.ping()
    client.close()
    plain = redis.Redis.from_url(server.url.replace("rediss://", "redis://", 1), socket_timeout=5)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    plain.close()


def test_tls_only_before_and_after_a_restart(private: PrivateRedis, files: TlsFiles) -> None:
    assert_tls_only(private, files)
    port = private.port
    assert private.proc is not None
    os.kill(private.proc.pid, signal.SIGKILL)
    private.proc.wait(10)
    private.start()
    assert private.port == port
    assert_tls_only(private, files)
