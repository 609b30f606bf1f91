"""Fault: Redis is gone for a while and comes back. The agent's worker must take jobs again within about one
heartbeat interval, not after RQ's back-off (1, 2, 4 ... 60 s) while its heartbeats already read online."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from shared import heartbeat, keys
from shared import jobs as job_names
from tests.support import RedisServer, wait_until
from tests.worker_agent.conftest import final_report, kill_recorded_processes, node_queue, run_payload

pytestmark = pytest.mark.e2e

INTERVAL = 1.0
OUTAGE = 9.0  # RQ's own back-off would have reached 8 s by then: 1 + 2 + 4, then a wait of 8


@pytest.fixture
def server() -> Iterator[RedisServer]:
    started = RedisServer().start()
    yield started
    started.stop()


def test_the_worker_takes_jobs_again_within_an_interval_of_redis_coming_back(
    server: RedisServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "agent"
    log = tmp_path / "agent.log"
    env = {**os.environ, "CORRAL_RUNTIME_DIR": str(tmp_path / "run")}
    args = ["--redis-url", server.url, "--data-dir", str(data_dir), "--hostname", "r1", "--port", "0"]
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "worker_agent.cli", "--interval", str(INTERVAL), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_until(lambda: "Listening on" in log.read_text() or "cleaning registries" in log.read_text(), 30)
        node_id = (data_dir / "node-id").read_text().strip()
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait(10)
        gone = time.monotonic() + OUTAGE
        wait_until(lambda: time.monotonic() > gone, timeout=OUTAGE + 5, what="the outage to last")
        server.start()  # the same port, an empty Redis (as one without persistence comes back)
        back = time.monotonic()
        client = redis_lib.Redis.from_url(server.url)
        node_queue(client, node_id).enqueue(job_names.RUN_COMMAND, run_payload("t-back", "echo back"))
        report = wait_until(lambda: final_report(client, "t-back"), timeout=70, what=f"the job\n{log.read_text()}")
        took = time.monotonic() - back
        print(f"\njob taken and done {took:.2f} s after Redis came back (heartbeat interval {INTERVAL} s)")
        assert report["status"] == "succeeded"
        assert took <= INTERVAL + 3.0, f"{took:.1f} s: the worker sat in a reconnect back-off\n{log.read_text()}"
        # Meanwhile the node said its worker was not taking jobs (not ready), and says it takes them again.
        text = log.read_text()
        assert "lost Redis, not taking jobs" in text and "takes jobs again" in text, text
        wait_until(
            lambda: (
                (summary := heartbeat.parse_summary(client.get(keys.node_summary(node_id)) or b""))
                and summary.taking_jobs
            ),
            timeout=10,
            what="the summary saying the worker takes jobs",
        )
        client.close()
    finally:
        agent.kill()
        agent.wait(10)
        kill_recorded_processes(data_dir)
