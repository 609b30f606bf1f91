"""Long-running apps end to end (document 003 §5.2): a real manager, three real agents, real processes.

Every app runs `python3` payloads of tests/e2e/app_payloads (an HTTP server on $PORT0 that can be told to
answer 500, a crasher, a memory eater, a logger) so that the teardown finds and kills this module's
processes by their command line without touching anything else on the machine.
"""

from __future__ import annotations

import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.engines import HttpFileServer
from tests.support import kill_marked, marked_processes, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
HOSTS = ("node-a", "node-b", "node-c")
PAYLOADS = Path(__file__).parent / "app_payloads"
MARK = "corral-e2e-app"  # in every payload's argv: what the teardown kills
PYTHON = sys.executable


class Fleet:
    """The manager and its three agents (tagged web), shared by this module's tests; each test uses its own app."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = isolated_env(workdir)
        self.manager = Manager(workdir, self.env)
        self.agents: dict[str, Agent] = {}
        for hostname in HOSTS:
            self.agents[hostname] = self._agent(hostname)

    def _agent(self, hostname: str) -> Agent:
        agent = Agent(self.workdir, self.env, self.manager, hostname, INTERVAL)
        agent.args += ["--tag", "web", "--tag", f"host-{hostname}"]
        return agent

    def start(self) -> None:
        self.manager.start()
        for agent in self.agents.values():
            agent.start()
        wait_until(lambda: len(self.online()) == len(HOSTS), timeout=30, what=f"three online nodes\n{self.logs()}")
        self.node_ids = {n["hostname"]: n["id"] for n in self.manager.get("/api/nodes").json()["nodes"]}

    def stop(self) -> None:
        for agent in self.agents.values():
            if agent.alive():
                agent.terminate()
        if self.manager.alive():
            self.manager.terminate()

    def logs(self) -> str:
        parts = [f"--- manager\n{self.manager.output()[-3000:]}"]
        parts += [f"--- {name}\n{agent.output()[-3000:]}" for name, agent in self.agents.items()]
        return "\n".join(parts)

    def online(self) -> set[str]:
        answer = self.manager.get("/api/nodes")
        assert answer.status_code == 200, answer.text
        return {n["hostname"] for n in answer.json()["nodes"] if n["status"] == "online"}

    # --- the apps API -----------------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.manager.post("/api/apps", body)
        assert answer.status_code == 201, f"{answer.status_code} {answer.text}"
        return answer.json()

    def app(self, name: str) -> dict[str, Any]:
        answer = self.manager.get(f"/api/apps/{name}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def action(self, name: str, verb: str, body: Any = None) -> dict[str, Any]:
        answer = self.manager.post(f"/api/apps/{name}/{verb}", body)
        assert answer.status_code in (200, 202), f"{verb}: {answer.status_code} {answer.text}"
        return answer.json()

    def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = requests.put(f"{self.manager.url}/api/apps/{name}", json=body, timeout=10)
        assert answer.status_code in (200, 202), f"update: {answer.status_code} {answer.text}"
        return answer.json()

    def delete(self, name: str) -> None:
        answer = requests.delete(f"{self.manager.url}/api/apps/{name}", timeout=10)
        assert answer.status_code in (200, 202, 204), f"delete: {answer.status_code} {answer.text}"

    def wanted(self, name: str) -> list[dict[str, Any]]:
        """The instances the app wants running (not those being stopped)."""
        return [i for i in self.app(name)["instances"] if i["desired"] == "run"]

    def wait_running(
        self, name: str, count: int, healthy: bool = True, timeout: float = 40, version: int | None = None
    ) -> list[dict[str, Any]]:
        """The app's instances once exactly ``count`` run (healthy, of ``version``) and no other is left."""

        def probe() -> list[dict[str, Any]] | None:
            app = self.app(name)
            rows = app["instances"]
            good = [
                i
                for i in rows
                if i["desired"] == "run"
                and i["state"] == "running"
                and (not healthy or i["health"] == "healthy")
                and (version is None or i["version"] == version)
            ]
            return good if len(good) == count == len(rows) else None

        try:
            return wait_until(probe, timeout=timeout, what=f"app {name}: {count} running instances")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast: {json.dumps(self.app(name), indent=1)}\n{self.logs()}") from None

    def set_tags(self, hostname: str, tags: list[str]) -> None:
        answer = requests.put(
            f"{self.manager.url}/api/nodes/{self.node_ids[hostname]}/tags", json={"tags": tags}, timeout=10
        )
        assert answer.status_code == 200, answer.text

    def host_of(self, instance: dict[str, Any]) -> str:
        return {v: k for k, v in self.node_ids.items()}[instance["node_id"]]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("apps"))
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        kill_payloads()


def payloads() -> list[psutil.Process]:
    """This module's live payload processes."""
    return marked_processes(MARK)


def kill_payloads() -> None:
    kill_marked(MARK)


def app_body(name: str, script: str, *script_args: str, **extra: Any) -> dict[str, Any]:
    """An app running one of the payloads with ``$PORT0`` and the mark in its argv."""
    return {
        "name": name,
        "toProcess": PYTHON,
        "args": [str(PAYLOADS / script), MARK, *script_args],
        "ports": [0],
        **extra,
    }


HTTP_CHECK = {
    "protocol": "HTTP",
    "path": "/",
    "portIndex": 0,
    "initialDelaySeconds": 0,
    "intervalSeconds": 0.5,
    "timeoutSeconds": 2,
    "maxConsecutiveFailures": 3,
}


def http_ok(port: int, path: str = "/") -> int:
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code


# --- the tests ----------------------------------------------------------------------------------------------


def test_three_instances_spread_over_three_nodes_by_a_query_with_reachable_ports(fleet: Fleet) -> None:
    fleet.create(
        app_body("spread", "http_server.py", "$PORT0", nodeQuery="tags:web", instances=3, healthChecks=[HTTP_CHECK])
    )
    rows = fleet.wait_running("spread", 3)
    assert len({row["node_id"] for row in rows}) == 3, rows  # one per node: spread
    assert all(row["placed_because"].startswith("the app had 0 of its 3 instances; node ") for row in rows), rows
    for row in rows:
        (port,) = row["ports"]
        assert 20000 <= port < 32768, row  # below the kernel's ephemeral range
        assert http_ok(port) == 200
        assert psutil.pid_exists(row["pid"])
        assert row["hostname"] == fleet.host_of(row)
    # The payload answers its environment: PORT, HOST, APP_NAME, INSTANCE_ID as the issue names them.
    env = requests.get(f"http://127.0.0.1:{rows[0]['ports'][0]}/env", timeout=5).json()
    assert env["APP_NAME"] == "spread" and env["INSTANCE_ID"] == rows[0]["id"]
    assert env["PORT0"] == env["PORT"] == str(rows[0]["ports"][0])
    assert env["HOST"]
    fleet.delete("spread")
    wait_until(lambda: not any(psutil.pid_exists(row["pid"]) for row in rows), timeout=30, what="instances stopped")


def test_placement_follows_a_tag_change(fleet: Fleet) -> None:
    fleet.set_tags("node-a", ["web", "blue"])
    try:
        fleet.create(app_body("follow", "http_server.py", "$PORT0", nodeQuery="tags:blue", instances=1))
        (first,) = fleet.wait_running("follow", 1)
        assert fleet.host_of(first) == "node-a"
        fleet.set_tags("node-a", ["web"])
        fleet.set_tags("node-b", ["web", "blue"])

        def moved() -> list[dict[str, Any]] | None:
            rows = fleet.app("follow")["instances"]
            if len(rows) == 1 and rows[0]["state"] == "running" and fleet.host_of(rows[0]) == "node-b":
                return rows
            return None

        (second,) = wait_until(moved, timeout=40, what=f"instance moved to node-b\n{fleet.logs()}")
        assert second["id"] != first["id"]
        assert "node node-a stopped matching" in second["placed_because"], second
        assert "node node-b matches nodeQuery 'tags:blue'" in second["placed_because"], second
        wait_until(lambda: not psutil.pid_exists(first["pid"]), timeout=20, what="the old copy stopped")
    finally:
        fleet.delete("follow")
        requests.delete(f"{fleet.manager.url}/api/nodes/{fleet.node_ids['node-a']}/tags", timeout=10)
        requests.delete(f"{fleet.manager.url}/api/nodes/{fleet.node_ids['node-b']}/tags", timeout=10)


def test_a_failing_http_check_restarts_the_instance(fleet: Fleet) -> None:
    # The server answers 500 on /sick: checked there, it fails three times in a row and is killed, restarted.
    check = HTTP_CHECK | {"path": "/sick"}
    fleet.create(app_body("sick", "http_server.py", "$PORT0", instances=1, healthChecks=[check], backoffSeconds=0.2))

    def restarted() -> dict[str, Any] | None:
        rows = fleet.app("sick")["instances"]
        return rows[0] if rows and rows[0]["restart_count"] >= 1 and rows[0]["restarts"] else None

    row = wait_until(restarted, timeout=40, what=f"a restart after failing checks\n{fleet.logs()}")
    reason = row["restarts"][0]["reason"]
    assert "health" in reason.lower() and "500" in reason, row
    assert row["last_check"] is not None and row["last_check"]["ok"] is False, row
    fleet.delete("sick")


def test_a_crash_loop_backs_off(fleet: Fleet) -> None:
    fleet.create(
        app_body(
            "crash", "crasher.py", instances=1, ports=[], backoffSeconds=0.3, backoffFactor=2.0, maxLaunchDelaySeconds=5
        )
    )

    def five_restarts() -> dict[str, Any] | None:
        rows = fleet.app("crash")["instances"]
        return rows[0] if rows and rows[0]["restart_count"] >= 5 else None

    row = wait_until(five_restarts, timeout=60, what=f"five restarts\n{fleet.logs()}")
    times = sorted(_epoch(r["at"]) for r in row["restarts"])
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[-1] > gaps[0] * 1.5, gaps  # the delay grows
    assert all("code 3" in r["reason"] for r in row["restarts"]), row["restarts"]
    assert row["exit_code"] == 3
    fleet.delete("crash")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_scale_up_and_down(fleet: Fleet) -> None:
    fleet.create(app_body("scaled", "http_server.py", "$PORT0", instances=1, healthChecks=[HTTP_CHECK]))
    fleet.wait_running("scaled", 1)
    fleet.action("scaled", "scale", {"instances": 3})
    rows = fleet.wait_running("scaled", 3)
    assert len({row["node_id"] for row in rows}) == 3
    fleet.action("scaled", "scale", {"instances": 1})
    (kept,) = fleet.wait_running("scaled", 1)
    gone = [row for row in rows if row["id"] != kept["id"]]
    wait_until(lambda: not any(psutil.pid_exists(r["pid"]) for r in gone), timeout=30, what="scaled down")
    fleet.delete("scaled")


def test_a_rolling_update_never_drops_below_the_count_minus_one(fleet: Fleet) -> None:
    body = app_body("rolling", "http_server.py", "$PORT0", instances=3, healthChecks=[HTTP_CHECK])
    fleet.create(body)
    first = fleet.wait_running("rolling", 3)
    # An unchanged definition restarts nothing.
    fleet.update("rolling", body)
    app = fleet.app("rolling")
    assert app["version"] == 1 and not app["deployment"]["in_progress"], app
    assert {r["id"] for r in app["instances"]} == {r["id"] for r in first}
    lowest = [3]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            rows = fleet.wanted("rolling")
            healthy = sum(1 for r in rows if r["state"] == "running" and r["health"] == "healthy")
            lowest[0] = min(lowest[0], healthy)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        fleet.update("rolling", body | {"envs": {"COLOUR": "green"}})
        rows = fleet.wait_running("rolling", 3, version=2, timeout=90)
    finally:
        stop.set()
        watcher.join(5)
    assert lowest[0] >= 2, lowest
    assert not {r["id"] for r in rows} & {r["id"] for r in first}
    env = requests.get(f"http://127.0.0.1:{rows[0]['ports'][0]}/env", timeout=5).json()
    assert env["COLOUR"] == "green"
    fleet.delete("rolling")


def test_uris_with_a_zip_are_fetched_and_unpacked(fleet: Fleet, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "site.zip", "w") as archive:
        archive.writestr("site/hello.txt", "hello from the zip\n")
    server = HttpFileServer(served)
    workdir = tmp_path / "work"
    try:
        fleet.create(
            app_body(
                "zipped",
                "http_server.py",
                "$PORT0",
                instances=1,
                workingDirectory=str(workdir),
                uris=[server.url("site.zip")],
                healthChecks=[HTTP_CHECK],
            )
        )
        (row,) = fleet.wait_running("zipped", 1)
        answer = requests.get(f"http://127.0.0.1:{row['ports'][0]}/file/site/hello.txt", timeout=5)
        assert answer.text == "hello from the zip\n"
        assert server.served == ["/site.zip"]
    finally:
        fleet.delete("zipped")
        server.stop()


def test_logs_are_followed(fleet: Fleet) -> None:
    fleet.create(app_body("chatty", "logger.py", instances=1, ports=[]))
    (row,) = fleet.wait_running("chatty", 1)
    path = f"/api/apps/chatty/instances/{row['id']}/logs"

    def tail() -> list[str] | None:
        lines = fleet.manager.get(path, params={"stream": "stdout", "tail": 5}).json()["lines"]
        return [line["line"] for line in lines] if lines else None

    first = wait_until(tail, timeout=20, what="log lines")
    assert all(line.startswith("tick ") for line in first), first
    seen: list[str] = []
    with requests.get(
        fleet.manager.url + path, params={"stream": "stdout", "follow": 1, "tail": 0}, stream=True, timeout=20
    ) as answer:
        assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
        for raw in answer.iter_lines(decode_unicode=True):
            if raw and raw.startswith("data:"):
                seen.append(json.loads(raw[5:])["line"])
                if len(seen) >= 2:
                    break
    assert all(line.startswith("tick ") for line in seen), seen
    assert int(seen[-1].split()[1]) > int(first[-1].split()[1])  # new lines, as they came
    fleet.delete("chatty")


def test_a_memory_limit_is_enforced(fleet: Fleet) -> None:
    fleet.create(
        app_body("greedy", "memory_eater.py", "400", instances=1, ports=[], resAlloc={"memMb": 64}, backoffSeconds=0.5)
    )

    def oom() -> dict[str, Any] | None:
        rows = fleet.app("greedy")["instances"]
        return rows[0] if rows and any(r["oom"] for r in rows[0]["restarts"]) else None

    row = wait_until(oom, timeout=60, what=f"an out-of-memory restart\n{fleet.logs()}")
    assert row["limits"] and row["limits"].startswith("enforced"), row
    assert "out of memory" in next(r["reason"] for r in row["restarts"] if r["oom"])
    fleet.delete("greedy")


def test_a_killed_agent_gets_its_instances_rescheduled_and_back_adds_none(fleet: Fleet) -> None:
    fleet.create(
        app_body("survivor", "http_server.py", "$PORT0", nodeQuery="tags:web", instances=2, healthChecks=[HTTP_CHECK])
    )
    rows = fleet.wait_running("survivor", 2)
    victim = fleet.host_of(rows[0])
    stale = rows[0]
    fleet.agents[victim].kill()  # SIGKILL: its instance keeps running, unseen
    try:

        def replaced() -> list[dict[str, Any]] | None:
            good = [
                r
                for r in fleet.wanted("survivor")
                if r["state"] == "running" and r["health"] == "healthy" and fleet.host_of(r) != victim
            ]
            return good if len(good) == 2 else None

        now_rows = wait_until(replaced, timeout=40, what=f"instance replaced on another node\n{fleet.logs()}")
        assert len({r["node_id"] for r in now_rows}) == 2
        (replacement,) = [r for r in now_rows if r["id"] != rows[1]["id"]]
        assert f"replaces instance {stale['id']}, lost with its node {victim}" in replacement["placed_because"]
        assert psutil.pid_exists(stale["pid"])  # the stale copy still runs on the lost node
    finally:
        fleet.agents[victim] = fleet._agent(victim)
        fleet.agents[victim].start()
    wait_until(lambda: victim in fleet.online(), timeout=30, what="agent back")
    # Back: its agent re-adopts the stale copy, reports it, and is told to stop it; the app keeps its count.
    wait_until(lambda: not psutil.pid_exists(stale["pid"]), timeout=30, what=f"stale copy stopped\n{fleet.logs()}")
    final = fleet.wait_running("survivor", 2)
    assert stale["id"] not in {r["id"] for r in final}
    fleet.delete("survivor")
