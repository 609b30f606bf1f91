"""`corral dashboard` (rq-dashboard) and `rq info` over a real manager's private Redis with a real agent's queue."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests

from shared import keys
from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e

HOST = "dash-a"


class Fleet:
    def __init__(self, tmp: Path, manager: Manager, env: dict[str, str], node_id: str, job_id: str) -> None:
        self.tmp = tmp
        self.manager = manager
        self.env = env
        self.queue = keys.node_queue(node_id)
        self.job_id = job_id
        self.admin = redis.Redis.from_url(manager.redis_url(), decode_responses=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """A manager, one agent, and one finished task on it (so its queue has a job in a registry)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    env = isolated_env(tmp)
    manager = Manager(tmp, env)
    manager.start()
    agent = Agent(tmp, env, manager, HOST, 0.5)
    try:
        agent.start()
        nodes = wait_until(
            lambda: [n for n in manager.get("/api/nodes").json()["nodes"] if n["status"] == "online"],
            timeout=30,
            what="the agent online",
        )
        created = manager.post("/api/tasks?wait=30", {"name": "dash", "command": "echo hi", "targets": [HOST]})
        assert created.status_code == 201, created.text
        admin = redis.Redis.from_url(manager.redis_url(), decode_responses=True)
        queue = keys.node_queue(str(nodes[0]["id"]))
        finished = wait_until(
            lambda: admin.zrange(f"rq:finished:{queue}", 0, -1), timeout=30, what="a finished job in the queue"
        )
        admin.close()
        fleet = Fleet(tmp, manager, env, str(nodes[0]["id"]), finished[0])
        yield fleet
        fleet.admin.close()
    finally:
        if agent.alive():
            agent.terminate()
        manager.terminate()


class Dashboard:
    """`corral dashboard ARGS` running on a free port."""

    def __init__(self, fleet: Fleet, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = fleet.tmp / f"dashboard-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "corral"), "dashboard", "--port", str(self.port), *args],
                env=fleet.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return requests.get(self.url + "/0/data/queues.json", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(up, timeout=30, what=f"rq-dashboard on {self.url}")

    def json(self, path: str) -> Any:
        answer = requests.get(self.url + path, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_dashboard_shows_the_nodes_queue_read_only(fleet: Fleet) -> None:
    dashboard = Dashboard(fleet, "--data-dir", str(fleet.manager.db_path.parent))
    try:
        users = [u for u in fleet.admin.acl_users() if u.startswith("corral-dashboard-")]
        assert len(users) == 1, users
        queues = {q["name"]: q for q in dashboard.json("/0/data/queues.json")["queues"]}
        assert queues[fleet.queue]["finished_job_registry_count"] == 1, queues
        workers = dashboard.json("/0/data/workers.json")["workers"]
        assert [w["queues"] for w in workers] == [[fleet.queue]], workers
        job = dashboard.json(f"/0/data/job/{fleet.job_id}.json")  # JSON-serialized as the agent's jobs are
        assert job["status"] == "finished" and job["origin"] == fleet.queue, job
        for page in (
            "/",
            "/0/view/workers",
            f"/0/view/jobs/{fleet.queue}/finished/8/asc/1",
            f"/0/view/job/{fleet.job_id}",
        ):
            assert requests.get(dashboard.url + page, timeout=10).status_code == 200, page

        # Deleting is switched off in rq-dashboard; requeueing is not, and fails in Redis (read-only user).
        deleted = requests.post(f"{dashboard.url}/job/{fleet.job_id}/delete", timeout=10)
        assert deleted.json() == {"status": "DISABLED"}
        requeued = requests.post(f"{dashboard.url}/job/{fleet.job_id}/requeue", timeout=10)
        assert requeued.status_code == 500
        assert "no permissions" in dashboard.log.read_text()
        assert fleet.admin.exists(f"rq:job:{fleet.job_id}") and fleet.admin.llen(f"rq:queue:{fleet.queue}") == 0

        assert dashboard.stop() == 0, dashboard.log.read_text()
        assert not [u for u in fleet.admin.acl_users() if u.startswith("corral-dashboard-")]
    finally:
        dashboard.kill()
    assert fleet.manager.db_path.parent.joinpath("corral-redis", "password").read_text().strip() not in (
        dashboard.log.read_text()
    )


def test_dashboard_with_an_acl_user_as_given(fleet: Fleet) -> None:
    port = fleet.manager.redis_url().rsplit(":", 1)[1].split("/")[0]
    fleet.admin.execute_command(
        "ACL", "SETUSER", "ops-viewer", "on", ">viewer-pw-71c", "~*", "&*", "+@read", "+@connection", "+info"
    )
    dashboard = Dashboard(fleet, "--redis-url", f"redis://ops-viewer:viewer-pw-71c@127.0.0.1:{port}/0", "--as-given")
    try:
        assert fleet.queue in {q["name"] for q in dashboard.json("/0/data/queues.json")["queues"]}
        [server] = psutil.Process(dashboard.proc.pid).children()
        dashboard.kill()  # SIGKILL: no handler runs, the server still goes (PR_SET_PDEATHSIG)
        psutil.wait_procs([server], timeout=10)
        assert not server.is_running()
    finally:
        dashboard.kill()
        fleet.admin.acl_deluser("ops-viewer")


def test_dashboard_read_only_needs_a_user_that_may_make_users(fleet: Fleet) -> None:
    port = fleet.manager.redis_url().rsplit(":", 1)[1].split("/")[0]
    fleet.admin.execute_command(
        "ACL", "SETUSER", "ops-viewer2", "on", ">viewer-pw-72d", "~*", "&*", "+@read", "+@connection"
    )
    try:
        url = f"redis://ops-viewer2:viewer-pw-72d@127.0.0.1:{port}/0"
        answer = subprocess.run(
            [str(BIN / "corral"), "dashboard", "--redis-url", url, "--port", str(free_port())],
            env=fleet.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert answer.returncode == 2, answer
        assert "cannot make a read-only Redis user" in answer.stderr and "--as-given" in answer.stderr
        assert "viewer-pw-72d" not in answer.stderr
    finally:
        fleet.admin.acl_deluser("ops-viewer2")


def test_rq_info_lists_the_nodes_queue_and_worker(fleet: Fleet) -> None:
    answer = subprocess.run(
        [str(BIN / "rq"), "info", "--url", fleet.manager.redis_url()],
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 0, answer.stderr
    assert fleet.queue in answer.stdout and "1 workers" in answer.stdout, answer.stdout
