"""Real manager and agent processes for end-to-end tests, started through their console scripts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import requests

from shared import api, heartbeat
from shared.defaults import PROTOCOL_VERSION
from shared.paths import local_join_token_path
from tests import postgres_support
from tests.support import free_port, wait_until
from worker_agent.join import paced_wait

BIN = Path(sys.executable).parent


class Proc:
    """A console script run as a child process, its stderr and stdout kept in a log file."""

    stacks_signal: signal.Signals | None = None
    """The signal on which the process writes its threads' stacks to its log (None: it has none)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log = log
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code. A process still running after ``timeout`` is asked for its
        stacks and killed (no test after this one finds it still running), and the test fails with its log's end."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            if self.stacks_signal is not None:
                self.popen.send_signal(self.stacks_signal)
                try:
                    wait_until(lambda: "most recent call first" in self.output(), timeout=5, what="stacks")
                except AssertionError:
                    pass
            self.kill()
            tail = self.output()[-12000:]
            raise AssertionError(f"{self.args[0]} still ran {timeout} s after SIGTERM; its log ends:\n{tail}") from None

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Manager(Proc):
    """The `manager` console script on a free port, owning its private Redis."""

    def __init__(self, workdir: Path, env: dict[str, str], extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.db_path = workdir / "data" / "resource_monitor.db"
        self.url = f"http://127.0.0.1:{self.port}"
        args = [str(BIN / "manager"), "--port", str(self.port), "--db-path", str(self.db_path), *(extra or [])]
        if postgres_support.on_postgres() and "--db-url" not in args:
            # The PostgreSQL pass: the same data directory always finds the same database (restarts).
            self.db_url: str | None = postgres_support.database_for(str(self.db_path.parent))
            args += ["--db-url", self.db_url]
        else:
            self.db_url = None
        super().__init__(args, workdir / "manager.log", env)

    def start(self) -> None:
        super().start()
        wait_until(self.healthy, timeout=30, what=f"manager on {self.url}\n{self.output()}")

    def healthy(self) -> bool:
        if not self.alive():
            raise AssertionError(f"manager exited:\n{self.output()}")
        try:
            return requests.get(self.url + "/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    def redis_url(self) -> str:
        """The manager's own URL of its private Redis (every key; agents get a user of their node's keys only)."""
        redis_dir = self.db_path.parent / "corral-redis"
        password = (redis_dir / "password").read_text().strip()
        return f"redis://:{password}@127.0.0.1:{(redis_dir / 'port').read_text().strip()}/0"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10, **kw)


class Agent(Proc):
    """The `agent` console script with its own data dir and hostname."""

    stacks_signal = signal.SIGUSR1

    def __init__(self, workdir: Path, env: dict[str, str], manager: Manager, hostname: str, interval: float) -> None:
        self.hostname = hostname
        self.data_dir = workdir / f"agent-{hostname}"
        args = [
            str(BIN / "agent"),
            "--manager-url",
            manager.url,
            "--hostname",
            hostname,
            "--interval",
            str(interval),
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        super().__init__(args, workdir / f"agent-{hostname}.log", env)


def isolated_env(workdir: Path) -> dict[str, str]:
    """The test's environment with a private runtime dir, so join tokens never mix with a user's."""
    env = dict(os.environ)
    env["CORRAL_RUNTIME_DIR"] = str(workdir / "run")
    env.pop("CORRAL_API_TOKEN", None)
    env.pop("CORRAL_JOIN_TOKEN", None)
    return env


def post_paced(session: requests.Session, url: str, body: Any, headers: dict[str, str]) -> requests.Response:
    """POST as an agent joins: a 429 (the manager's --join-rate-limit, per address, and every simulated node
    here shares 127.0.0.1) is retried after its Retry-After with the agent's jitter."""
    while True:
        answer = session.post(url, json=body, headers=headers, timeout=10)
        if answer.status_code != 429:
            return answer
        time.sleep(paced_wait(float(answer.headers.get("Retry-After", "1"))))  # the pause the manager asks for


def join_simulated_nodes(
    manager: Manager, env: dict[str, str], count: int, facts: dict[str, object] | None = None
) -> tuple[redis.Redis, dict[str, bytes]]:
    """Join ``count`` simulated nodes (with ``facts``) through the real endpoint and heartbeat each once,
    signed (interval 60 s: online for three minutes); returns a client of the manager's Redis (its own
    user: one client for every node) and each node's signing key (what its reports must carry)."""
    token = (Path(env["CORRAL_RUNTIME_DIR"]) / local_join_token_path(manager.port).name).read_text().strip()
    client = redis.Redis.from_url(manager.redis_url())
    keys: dict[str, bytes] = {}
    session = requests.Session()
    for i in range(count):
        node_id = uuid.uuid4().hex
        body = {
            "node_id": node_id,
            "hostname": f"sim-{i:05d}",
            "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            "interval": 60.0,
            "protocol": PROTOCOL_VERSION,
            "facts": dict(facts or {}),
            "node_secret": uuid.uuid4().hex,
        }
        answer = post_paced(session, manager.url + api.JOIN_PATH, body, api.bearer(token))
        answer.raise_for_status()
        keys[node_id] = bytes.fromhex(answer.json()["job_key"])
        figures = {
            "interval": 60,
            "hostname": body["hostname"],
            "ip": body["ip"],
            "cpu_usage_percent": i % 100,
            "memory_usage_percent": 40,
        }
        heartbeat.write(client, node_id, figures, key=keys[node_id])
    return client, keys
