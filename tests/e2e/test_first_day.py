"""What a new user does on the first day, with real managers and agents: several agents on one host with
nothing but their hostnames, a second manager started by mistake, the whole stack stopped and started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from shared.paths import local_join_token_path
from tests.e2e.harness import BIN, Agent, Manager, Proc, isolated_env
from tests.support import default_sigint, free_port, pid_alive, wait_until
from tests.worker_agent.conftest import kill_recorded_processes
from worker_agent.data_dir import default_data_dir, default_root

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def nodes(manager: Manager) -> list[dict[str, Any]]:
    answer = manager.get("/api/task/node")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["nodes"])


def audit(manager: Manager, action: str) -> list[dict[str, Any]]:
    entries = manager.get("/api/audit?limit=1000").json()["entries"]
    return [e for e in entries if e["action"] == action]


def passes(seconds: float) -> bool:
    """Wait for wall time itself, the premise of a test (a stack down longer than the offline window)."""
    deadline = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= deadline, timeout=seconds + 5, what=f"{seconds} s to pass")
    return True


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    started = Manager(tmp_path, isolated_env(tmp_path))
    started.start()
    try:
        yield started
    finally:
        if started.alive():
            started.terminate()


def test_three_agents_with_only_a_hostname_are_three_nodes_with_three_queues(manager: Manager, tmp_path: Path) -> None:
    prefix = f"first-day-{uuid.uuid4().hex[:8]}"
    hostnames = [f"{prefix}-{i}" for i in range(3)]
    dirs = [default_data_dir(name) for name in hostnames]
    # New hostnames get directories of their own (the root stays with whoever has it on this machine).
    assert all(d.parent == default_root() / "hosts" for d in dirs) and len(set(dirs)) == 3, dirs
    agents = [
        Proc(
            [str(BIN / "agent"), "--manager-url", manager.url, "--hostname", name],
            tmp_path / f"{name}.log",
            manager.env,
        )
        for name in hostnames
    ]
    try:
        for agent in agents:
            agent.start()
        listed = wait_until(
            lambda: (
                (found := [n for n in nodes(manager) if n["hostname"].startswith(prefix)])
                and len(found) == 3
                and all(n["status"] == 0 for n in found)
                and found
            ),
            timeout=30,
            what="three online nodes\n" + "\n".join(a.output() for a in agents),
        )
        assert sorted(n["hostname"] for n in listed) == hostnames
        assert len({n["id"] for n in listed}) == 3
        for name, data_dir in zip(hostnames, dirs, strict=True):
            node = next(n for n in listed if n["hostname"] == name)
            assert (data_dir / "node-id").read_text().strip() == node["id"]
        # Each node works its own queue: one command on all three answers from three nodes.
        answer = manager.post("/api/tasks?wait=30", {"name": "who", "command": "echo hi", "targets": hostnames})
        assert answer.status_code in (200, 201), answer.text
        hosts = answer.json()["hosts"]
        assert sorted(h["hostname"] for h in hosts) == hostnames
        assert {h["status"] for h in hosts} == {"succeeded"} and len({h["host_id"] for h in hosts}) == 3
        # Two of them could not have the manual's 8081: they said so and took another port.
        fallbacks = sum("is taken" in a.output() for a in agents)
        assert fallbacks >= 2, "\n".join(a.output() for a in agents)
        for agent in agents:
            assert agent.terminate() == 0
    finally:
        for agent in agents:
            if agent.alive():
                agent.kill()
        for data_dir in dirs:
            kill_recorded_processes(data_dir)
            shutil.rmtree(data_dir, ignore_errors=True)


def test_a_second_manager_on_a_taken_port_changes_nothing_of_the_running_one(
    manager: Manager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_RUNTIME_DIR", manager.env["CORRAL_RUNTIME_DIR"])
    token_file = local_join_token_path(manager.port)
    local_token = wait_until(lambda: token_file.read_text(), what="the manager's local join token")
    other = tmp_path / "other"
    other.mkdir()
    second = Proc(
        [str(BIN / "manager"), "--port", str(manager.port), "--db-path", str(other / "db" / "resource_monitor.db")],
        other / "manager.log",
        manager.env,
    )
    began = time.monotonic()
    second.start()
    assert second.popen is not None
    assert second.popen.wait(15) == 1
    assert time.monotonic() - began < 10
    log = second.output()
    assert f"cannot listen on 127.0.0.1:{manager.port}: Address already in use" in log, log
    for never in ("manager listening", "duties started", "redis-server", "gunicorn"):
        assert never not in log, log
    assert token_file.read_text() == local_token
    assert not (other / "db").exists(), "nothing written before the port was taken"

    # Same data directory on another port: two private Redis on one AOF are refused too.
    third = Proc(
        [str(BIN / "manager"), "--port", str(free_port()), "--db-path", str(manager.db_path)],
        other / "third.log",
        manager.env,
    )
    third.start()
    assert third.popen is not None and third.popen.wait(15) == 1
    assert "is in use by another manager" in third.output() and "--db-path" in third.output(), third.output()
    assert manager.healthy()


def test_a_restarted_stack_raises_no_false_alarm_and_the_grace_ends(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    interval = 1.0  # offline after 3 s
    manager = Manager(tmp_path, env)
    agent = Agent(tmp_path, env, manager, "vm", interval)
    try:
        manager.start()
        agent.start()
        wait_until(lambda: [n for n in nodes(manager) if n["status"] == 0], timeout=30, what="the node online")
        body = {
            "business_id": "steady",
            "business_name": "steady",
            "components": [{"component_id": "w", "component_name": "w", "type": "process", "command": "sleep 600"}],
        }
        assert manager.post("/api/businesses", body).status_code == 201
        wait_until(
            lambda: manager.get("/api/businesses/steady").json()["status"] == "running", timeout=30, what="running"
        )

        # The whole stack goes down (manager first, so nobody judges meanwhile), longer than the window.
        assert manager.terminate() == 0
        assert agent.terminate() == 0
        assert passes(3 * interval + 2)
        restarted = time.time()
        manager.start()
        agent.start()
        wait_until(
            lambda: (n := nodes(manager)) and n[0]["status"] == 0 and unix(n[0]["last_heartbeat"]) > restarted,
            timeout=30,
            what="a new heartbeat",
        )
        assert passes(3 * interval)  # a full window more: a false alarm would have been raised by now
        assert audit(manager, "node.offline") == [], manager.output()
        business = manager.get("/api/businesses/steady").json()
        assert business["status"] == "running", business
        assert all(h["to"] != "failed" for h in business["history"]), business["history"]

        # The grace is one window, not forever: with no agent coming back the node goes offline.
        assert manager.terminate() == 0
        assert agent.terminate() == 0
        assert passes(3 * interval + 2)
        manager.start()
        resumed = time.time()
        offline = wait_until(lambda: audit(manager, "node.offline"), timeout=30, what="the node offline")
        at = unix(offline[0]["at"])
        assert at >= resumed + 3 * interval - 0.5, (at - resumed, manager.output())
    finally:
        for proc in (agent, manager):
            if proc.alive():
                proc.kill()
        kill_recorded_processes(agent.data_dir)


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_ops_dev_up_with_three_agents_and_ctrl_c_that_leaves_the_work_running(tmp_path: Path) -> None:
    """The local multi-node recipe of the README, stopped as a user does: Ctrl-C on its terminal."""
    port = free_port()
    env = isolated_env(tmp_path)
    log = tmp_path / "dev-up.log"
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        # A session of its own stands for the terminal: Ctrl-C is SIGINT to its whole foreground group.
        dev = subprocess.Popen(
            [str(REPO / "ops" / "dev"), "up", "--agents", "3", "--port", str(port), "--var", str(tmp_path / "var")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
    sleeper: int | None = None
    try:

        def listed() -> dict[str, dict[str, Any]] | None:
            assert dev.poll() is None, log.read_text()
            found = {n["hostname"]: n for n in requests.get(f"{url}/api/task/node", timeout=5).json()["nodes"]}
            return found if len(found) == 3 and all(n["status"] == 0 for n in found.values()) else None

        found = wait_until(listed, timeout=60, what="three online nodes")
        assert sorted(found) == ["node-1", "node-2", "node-3"]
        assert [found[f"node-{i}"]["labels"] for i in (1, 2, 3)] == [
            {"zone": "us-east"},
            {"zone": "eu-west"},
            {"zone": "ap-south"},
        ]
        # The README's two-node business plan: web needs zone us-east, so node-1.
        shop = {
            "business_id": "shop",
            "business_name": "web shop",
            "components": [
                {
                    "component_id": "web",
                    "component_name": "web",
                    "type": "process",
                    "command": "true",
                    "resource_requirements": {"cpu_cores": 1, "memory_mb": 256},
                    "affinity": {"node_labels": {"zone": "us-east"}},
                }
            ],
        }
        answer = requests.post(f"{url}/api/businesses?dry_run=true", json=shop, timeout=10)
        assert answer.status_code == 200, answer.text
        plan = answer.json()["plan"]
        assert [(p["component_id"], p["hostname"]) for p in plan] == [("web", "node-1")]

        template = {
            "name": "dev",
            "task_groups": [{"tasks": [{"name": "s", "config": {"command": "node-2:/bin/sleep 600"}}]}],
        }
        assert requests.post(f"{url}/api/task/task_group", json=template, timeout=10).status_code == 200
        dep = requests.post(f"{url}/api/task/task_group/deploy", json={"name": "dev"}, timeout=10).json()["id"]
        sleeper = wait_until(
            lambda: (
                (t := requests.get(f"{url}/deployments/{dep}", timeout=5).json()["tasks"][0])["state"] == "RUNNING"
                and t["pid"]
            ),
            timeout=30,
            what="the deployed task running",
        )

        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(60)
        text = log.read_text()
        for name in ("manager", "node-1", "node-2", "node-3"):
            assert f"{name}.1 stopped (rc=0)" in text, text
        assert pid_alive(sleeper), "Ctrl-C stops corral, not what it deployed"
    finally:
        # honcho starts each process in a session of its own: after a failure, stop them one by one.
        stack = _descendants(dev.pid)  # psutil.Process: kill() checks it is still the same process
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGINT)
            try:
                dev.wait(30)
            except subprocess.TimeoutExpired:
                dev.kill()
                dev.wait(10)
        for proc in stack:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if sleeper is not None and pid_alive(sleeper):
            os.killpg(sleeper, signal.SIGKILL)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def test_an_agent_writes_its_stacks_on_sigusr1_and_goes_on(manager: Manager, tmp_path: Path) -> None:
    """What an operator (and the harness, on a stop that hangs) asks of a stuck agent: where each thread is."""
    agent = Agent(tmp_path, manager.env, manager, "stacks", 0.5)
    agent.start()
    try:
        wait_until(
            lambda: [n for n in nodes(manager) if n["hostname"] == "stacks" and n["status"] == 0], 20, what="online"
        )
        os.kill(agent.pid, signal.SIGUSR1)
        # faulthandler writes one thread after another: the heartbeat thread's may come after the log's first read.
        wait_until(
            lambda: (
                "most recent call first" in (out := agent.output())
                and ("corral-heartbeat" in out or "heartbeat.py" in out)
            ),
            timeout=10,
            what="every thread's stack, the heartbeat thread's among them, in the agent's log",
        )
        assert agent.alive()
    finally:
        if agent.alive():
            assert agent.terminate() == 0
