"""The real manager launcher as a process: gunicorn, the private Redis, signals, restart on the same db."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis as redis_lib
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from shared import heartbeat, jobs, keys
from shared.api import JOIN_PATH, bearer
from shared.defaults import PROTOCOL_VERSION
from tests.support import free_port, pid_alive, wait_until

SOURCE_ROOT = Path(__file__).resolve().parents[2]


class Manager:
    """One ``python -m manager_api.launcher.main`` process on a free port with its own data dir."""

    def __init__(self, data_dir: Path, runtime_dir: Path, port: int | None = None, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir.parent / f"manager-{self.port}-{os.getpid()}.log"
        self.args = [
            sys.executable,
            "-m",
            "manager_api.launcher.main",
            "--port",
            str(self.port),
            "--db-path",
            str(data_dir / "resource_monitor.db"),
            "--workers",
            "1",
            *extra,
        ]
        self.env = {**os.environ, "CORRAL_RUNTIME_DIR": str(runtime_dir)}
        self.env.pop("CORRAL_API_TOKEN", None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Manager:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=SOURCE_ROOT, env=self.env, stderr=log, stdout=log)
        wait_until(self._healthy, timeout=30, what=f"manager on port {self.port}; log: {self.log_path}")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        return requests.get(self.url + "/healthz", timeout=2).json() == {"status": "ok"}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def redis(self) -> redis_lib.Redis:
        redis_dir = self.data_dir / "corral-redis"
        port = int((redis_dir / "port").read_text())
        password = (redis_dir / "password").read_text().strip()
        return redis_lib.Redis(host="127.0.0.1", port=port, password=password)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(40)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "data", tmp_path / "run"


@pytest.fixture
def manager(dirs: tuple[Path, Path]) -> Iterator[Manager]:
    started = Manager(*dirs).start()
    yield started
    started.kill()


def api(manager: Manager, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    if body is None:
        return requests.get(manager.url + path, timeout=5)
    return requests.post(manager.url + path, json=body, timeout=5)


def test_serves_stops_cleanly_and_keeps_its_data(manager: Manager, dirs: tuple[Path, Path]) -> None:
    data_dir, runtime_dir = dirs
    redis_dir = data_dir / "corral-redis"
    token = (data_dir / "join-token").read_text().strip()
    assert token and (runtime_dir / f"join-token-{manager.port}").read_text().strip() == token
    assert (data_dir / "join-token").stat().st_mode & 0o777 == 0o600
    assert (redis_dir / "password").stat().st_mode & 0o777 == 0o600
    client = manager.redis()
    assert client.ping()
    redis_pid = int(client.info("server")["process_id"])
    assert any(p.name.startswith("appendonly") for p in redis_dir.iterdir())
    with pytest.raises(redis_lib.AuthenticationError):
        redis_lib.Redis(
            host="127.0.0.1",
            port=client.connection_pool.connection_kwargs["port"],
            retry=Retry(NoBackoff(), 0),
        ).ping()

    joined = requests.post(
        manager.url + JOIN_PATH,
        headers=bearer(token),
        timeout=5,
        json={
            "node_id": "n1",
            "hostname": "web-01",
            "ip": "127.0.0.1",
            "interval": 5,
            "protocol": PROTOCOL_VERSION,
            "node_secret": "secret-of-n1-in-this-test",
        },
    )
    assert joined.status_code == 200
    agent_url = joined.json()["redis_url"]
    assert "@127.0.0.1:" in agent_url and redis_lib.Redis.from_url(agent_url).ping()
    figures = {"interval": 5, "cpu_usage_percent": 12, "memory_usage_percent": 34}
    heartbeat.write(client, "n1", figures, key=bytes.fromhex(joined.json()["job_key"]))
    nodes = api(manager, "/api/task/node").json()["nodes"]
    assert [(n["id"], n["status"], n["resources"]) for n in nodes] == [
        ("n1", 0, "cpu_usage_percent:12,memory_usage_percent:34")
    ]
    template = {
        "name": "app",
        "task_groups": [{"tasks": [{"name": "t", "config": {"command": "/bin/sleep 1"}}]}],
    }
    assert api(manager, "/api/task/task_group", template).json() == {"status": "success"}
    deployment_id = api(manager, "/api/task/task_group/deploy", {"name": "app"}).json()["id"]
    queued = Queue(keys.node_queue("n1"), connection=client, serializer=JSONSerializer).get_jobs()
    assert [j.func_name for j in queued] == [jobs.START_TASK]
    client.close()

    assert manager.terminate() == 0
    assert "shutting down" in manager.log()
    wait_until(lambda: not pid_alive(redis_pid), timeout=10, what="private redis-server gone")
    with pytest.raises(requests.ConnectionError):
        requests.get(manager.url + "/healthz", timeout=2)

    again = Manager(data_dir, runtime_dir, manager.port).start()
    try:
        assert api(again, "/api/task/query", {"name": "app"}).json()["name"] == "app"
        status = api(again, "/api/task/task_group/query", {"id": deployment_id}).json()
        assert (status["id"], status["status"]) == (deployment_id, 0)
        assert (data_dir / "join-token").read_text().strip() == token
        # The AOF brought the queued job back.
        restarted = again.redis()
        assert Queue(keys.node_queue("n1"), connection=restarted, serializer=JSONSerializer).count == 1
        restarted.close()
        assert again.terminate() == 0
    finally:
        again.kill()


def test_exits_1_and_cleans_up_when_gunicorn_dies(manager: Manager) -> None:
    assert manager.proc is not None
    client = manager.redis()
    redis_pid = int(client.info("server")["process_id"])
    client.close()
    children = psutil.Process(manager.proc.pid).children()
    gunicorn = next(c for c in children if "gunicorn" in " ".join(c.cmdline()))
    gunicorn.kill()
    assert manager.proc.wait(30) == 1
    assert "gunicorn" in manager.log() and "died" in manager.log()
    wait_until(lambda: not pid_alive(redis_pid), timeout=10, what="private redis-server gone")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "without an API token"),
        (["--sftp-host", "sftp://root:hunter2@host/data"], "sftp://user:password@host:port/path/"),
    ],
)
def test_refuses_bad_flags_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    env = {**os.environ, "CORRAL_RUNTIME_DIR": str(tmp_path / "run")}
    env.pop("CORRAL_API_TOKEN", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "manager_api.launcher.main",
            "--port",
            str(free_port()),
            "--db-path",
            str(tmp_path / "data" / "x.db"),
            *args,
        ],
        cwd=SOURCE_ROOT,
        env=env,
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert "hunter2" not in done.stderr.decode()
    assert not (tmp_path / "data").exists()
