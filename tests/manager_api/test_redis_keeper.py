"""The manager keeps its private Redis running: a real redis-server killed, restarted on its port with its
data; one that cannot start again is given up on after a bounded number of tries."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from manager_api.launcher.redis_server import PrivateRedis, RedisKeeper
from tests.support import wait_until


@pytest.fixture
def private(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def kill_9(server: PrivateRedis) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def test_a_killed_redis_comes_back_on_its_port_with_its_data(private: PrivateRedis) -> None:
    client = redis_lib.Redis.from_url(private.url)
    client.set("kept", "yes")
    fsynced = time.monotonic() + 1.5  # appendfsync everysec: what was written a second ago is on disk
    wait_until(lambda: time.monotonic() > fsynced, timeout=5, what="one AOF fsync")
    port, pid = private.port, private.proc.pid if private.proc else 0
    keeper = RedisKeeper(private, first_pause=0.2)
    assert keeper.check() and keeper.failures == 0

    kill_9(private)
    assert keeper.check(), "a death is retried, not given up on"
    assert keeper.failures == 1 and not private.alive()
    wait_until(lambda: keeper.check() and private.alive(), timeout=20, what="the restart")
    assert private.port == port and private.proc is not None and private.proc.pid != pid
    assert redis_lib.Redis.from_url(private.url).get("kept") == b"yes"
    client.close()


def test_a_restarted_redis_is_prepared_before_its_port_opens(private: PrivateRedis) -> None:
    seen: list[str] = []

    def prepare(client: redis_lib.Redis) -> None:
        # Nobody reaches it over TCP yet (gunicorn workers, duties, agents): only this unix socket client.
        try:
            redis_lib.Redis(port=private.port, socket_connect_timeout=1).ping()
            seen.append("port open")
        except redis_lib.ConnectionError:
            seen.append("port closed")
        client.set("prepared", "yes")

    keeper = RedisKeeper(private, first_pause=0.05, on_restart=prepare)
    kill_9(private)
    wait_until(lambda: keeper.check() and private.alive(), timeout=20, what="the restart")
    assert seen == ["port closed"]
    assert redis_lib.Redis.from_url(private.url).get("prepared") == b"yes"


def test_a_redis_that_cannot_start_again_is_given_up_on_after_the_attempts(
    private: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    keeper = RedisKeeper(private, attempts=2, first_pause=0.05)
    kill_9(private)
    # What an operator would find: an append-only file that Redis refuses to load.
    for aof in private.dir.rglob("*.aof*"):
        aof.write_text("this is not an append only file\n")
    began = time.monotonic()
    while keeper.check():
        assert time.monotonic() - began < 60, "the keeper must give up in bounded time"
        time.sleep(0.02)
    assert keeper.failures == 3 and not private.alive()
    assert "giving up after 2 restarts in a row" in caplog.text
    assert caplog.text.count("could not be restarted") == 2
