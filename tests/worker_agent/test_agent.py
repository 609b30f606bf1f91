"""The agent as a real process: health, heartbeats, jobs, SIGTERM (tasks survive), restart (tasks adopted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from rq.job import JobStatus

from shared import heartbeat, job_signing, keys
from shared import jobs as job_names
from shared.defaults import OFFLINE_AFTER_INTERVALS
from shared.paths import local_join_token_path
from tests.support import RedisServer, command_records, free_port, pid_alive, wait_until
from tests.worker_agent.conftest import (
    ManagerProcess,
    final_report,
    last_state,
    node_queue,
    run_payload,
    start_payload,
    state_is,
    task_events,
)
from worker_agent import process_tree


class AgentProcess:
    """``python -m worker_agent.cli ...`` with its log in a file."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.log_path = tmp_path / f"agent-{time.monotonic_ns()}.log"
        env = {**os.environ, "CORRAL_RUNTIME_DIR": str(tmp_path / "run")}
        env.pop("CORRAL_JOIN_TOKEN", None)
        command = [sys.executable, "-m", "worker_agent.cli", "--port", str(self.port), "--interval", "0.5"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*command, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def health(self, path: str = "/healthz") -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
            return json.loads(response.read())

    def joined(self) -> dict[str, Any] | None:
        assert self.proc.poll() is None, self.log
        status = self.health()
        return status if status["joined"] else None

    def terminate(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[AgentProcess]]:
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


def test_the_agent_runs_tasks_that_outlive_it_and_adopts_them_after_a_restart(
    redis_url: str, redis_client: redis_lib.Redis, data_dir: Path, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    args = ("--redis-url", redis_url, "--data-dir", str(data_dir), "--hostname", "node-a")
    agent = AgentProcess(tmp_path, *args)
    agents.append(agent)
    status = wait_until(agent.joined, what="the agent to work its queue")
    node_id = (data_dir / "node-id").read_text().strip()
    assert status == {
        "status": "ok",
        "node_id": node_id,
        "hostname": "node-a",
        "data_dir": str(data_dir),
        "joined": True,
        "tasks_running": 0,
        "commands_running": 0,
        "app_instances_running": 0,
    }
    with pytest.raises(urllib.error.HTTPError) as not_found:
        agent.health("/anything-else")
    not_found.value.close()
    assert not_found.value.code == 404

    def beat() -> dict[str, str] | None:
        now, beats = heartbeat.read(redis_client, [node_id])
        fresh = heartbeat.is_online(beats[node_id], now, OFFLINE_AFTER_INTERVALS)
        return beats[node_id] if fresh else None

    figures = wait_until(beat, what="a heartbeat")
    assert figures["hostname"] == "node-a" and float(figures["interval"]) == 0.5
    assert 0 <= float(figures["memory_usage_percent"]) <= 100

    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.START_TASK, start_payload("t-long", "sleep 300"))
    running = wait_until(lambda: last_state(redis_client, "t-long"), what="the task to run")
    pid = running["pid"]
    assert running["state"] == "RUNNING" and pid_alive(pid)
    wait_until(lambda: agent.health()["tasks_running"] == 1, what="health to count the task")

    assert agent.terminate() == 0
    assert "agent shutting down" in agent.log
    assert pid_alive(pid), "the task must outlive the agent"

    restarted = AgentProcess(tmp_path, *args)
    agents.append(restarted)
    wait_until(restarted.joined, what="the restarted agent")
    wait_until(lambda: len(task_events(redis_client, "t-long")) == 2, what="RUNNING re-announced")
    again = last_state(redis_client, "t-long")
    assert (again["state"], again["pid"]) == ("RUNNING", pid)
    assert restarted.health()["tasks_running"] == 1

    queue.enqueue(job_names.STOP_TASKS, {"task_ids": ["t-long"], "grace_seconds": 5})
    stopped = wait_until(lambda: state_is(redis_client, "t-long", "STOPPED"), what="the task to stop")
    assert stopped["exit_code"] == -signal.SIGTERM
    wait_until(lambda: not pid_alive(pid), what="the adopted task to die")
    assert restarted.terminate() == 0


def test_a_command_running_when_the_agent_restarts_is_killed_and_reported_failed(
    redis_url: str, redis_client: redis_lib.Redis, data_dir: Path, tmp_path: Path, agents: list[AgentProcess]
) -> None:
    args = ("--redis-url", redis_url, "--data-dir", str(data_dir))
    agent = AgentProcess(tmp_path, *args)
    agents.append(agent)
    wait_until(agent.joined, what="the agent to work its queue")
    node_id = (data_dir / "node-id").read_text().strip()
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.RUN_COMMAND, run_payload("c-agent", "echo up; sleep 300 & sleep 300; wait", timeout=600))
    wait_until(lambda: agent.health()["commands_running"] == 1, what="the command to run")
    # The record is saved just after the spawn (commands.py): wait for it rather than read it at once.
    pid = wait_until(
        lambda: command_records(data_dir).get("c-agent", {}).get("pid"),
        what="the command's record with its pid",
    )
    wait_until(lambda: len(process_tree.group_members(pid)) == 3, what="the shell and both sleeps")

    assert agent.terminate() == 0
    restarted = AgentProcess(tmp_path, *args)
    agents.append(restarted)

    final = wait_until(lambda: final_report(redis_client, "c-agent"), what="the restarted agent's report")
    assert (final["status"], final["error_message"], final["pid"]) == (
        "failed",
        "agent restarted while the command ran",
        pid,
    )
    wait_until(lambda: process_tree.group_members(pid) == [], what="no process of the command left")
    wait_until(restarted.joined, what="the restarted agent")
    assert restarted.health()["commands_running"] == 0
    assert restarted.terminate() == 0


def test_the_agent_joins_the_manager_with_the_local_token_file(
    redis_client: redis_lib.Redis,
    data_dir: Path,
    tmp_path: Path,
    agents: list[AgentProcess],
    manager: ManagerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The manager and AgentProcess share the runtime dir tmp_path/run: the manager left its token there.
    monkeypatch.setenv("CORRAL_RUNTIME_DIR", str(tmp_path / "run"))
    token_file = local_join_token_path(manager.port)
    assert token_file.read_text().strip() == manager.token
    monkeypatch.setenv("CORRAL_LABELS", "zone=eu-1,role=db")
    agent = AgentProcess(
        tmp_path, "--manager-url", manager.url, "--data-dir", str(data_dir), "--label", "role=web", "--label", "rack=r7"
    )
    agents.append(agent)

    wait_until(agent.joined, what="the agent to join")
    [joined] = manager.nodes().values()
    node_id = (data_dir / "node-id").read_text().strip()
    assert joined["id"] == node_id and joined["ip"] == "127.0.0.1" and joined["interval"] == 0.5
    assert joined["facts"]["cpu_count"] >= 1
    # CORRAL_LABELS first, then the flags (a flag wins).
    assert joined["facts"]["labels"] == {"zone": "eu-1", "role": "web", "rack": "r7"}

    # Joined, it runs only what the manager signed for it: a job pushed by anyone else fails unrun. (Its id
    # carries the node's, keys.node_job_id: the node's Redis user reaches no other job.)
    queue = node_queue(redis_client, node_id)
    forged_id = keys.node_job_id(node_id, "forged")
    forged = queue.enqueue(job_names.START_TASK, start_payload("t-forged", "exit 0"), job_id=forged_id)
    wait_until(lambda: forged.get_status(refresh=True) == JobStatus.FAILED, what="the unsigned job refused")
    assert "not signed by the manager for this node" in (forged.latest_result().exc_string or "")
    payload = start_payload("t-quick", "exit 0")
    quick = keys.node_job_id(node_id, "quick")
    signature = job_signing.sign(manager.job_key(node_id), job_names.START_TASK, [payload], {}, quick, queue.name)
    queue.enqueue(job_names.START_TASK, payload, job_id=quick, meta={job_signing.META_FIELD: signature})
    done = wait_until(lambda: state_is(redis_client, "t-quick", "COMPLETED"), what="the task to complete")
    assert done["node_id"] == node_id
    assert state_is(redis_client, "t-forged", "COMPLETED") is None and not task_events(redis_client, "t-forged")
    assert agent.terminate() == 0


def test_a_bad_label_stops_the_agent_with_a_clear_message(tmp_path: Path, data_dir: Path) -> None:
    agent = AgentProcess(tmp_path, "--redis-url", "redis://127.0.0.1:1/0", "--data-dir", str(data_dir), "--label", "=x")
    assert agent.proc.wait(10) == 2
    assert "label key '' must be non-empty" in agent.log


def test_sigterm_while_joining_exits_at_once(tmp_path: Path, data_dir: Path, agents: list[AgentProcess]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    agent = AgentProcess(tmp_path, "--manager-url", nobody, "--token", "t", "--data-dir", str(data_dir))
    agents.append(agent)
    wait_until(lambda: "join attempt 2 failed" in agent.log, what="the agent to retry joining")
    status = agent.health()
    assert status["joined"] is False

    began = time.monotonic()
    assert agent.terminate(timeout=5) == 0
    assert time.monotonic() - began < 3
    assert "agent shutting down" in agent.log


def test_the_agent_rides_out_a_redis_restart(tmp_path: Path, data_dir: Path, agents: list[AgentProcess]) -> None:
    first = RedisServer().start()
    second = RedisServer()
    second.port = first.port  # the same address comes back
    try:
        agent = AgentProcess(tmp_path, "--redis-url", first.url, "--data-dir", str(data_dir))
        agents.append(agent)
        wait_until(agent.joined, what="the agent to work its queue")
        node_id = (data_dir / "node-id").read_text().strip()

        first.stop()
        wait_until(lambda: "heartbeat failed" in agent.log, what="the heartbeat to notice")
        second.start()
        client = redis_lib.Redis.from_url(second.url)
        node_queue(client, node_id).enqueue(job_names.START_TASK, start_payload("t-after", "exit 0"))

        wait_until(lambda: state_is(client, "t-after", "COMPLETED"), timeout=30, what="a job after the restart")
        wait_until(lambda: "heartbeat written again" in agent.log, what="heartbeats to resume")
        assert agent.log.count("heartbeat failed") == 1, "one warning per outage, not one per tick"
        assert agent.health()["joined"] is True
        client.close()
    finally:
        first.stop()
        second.stop()
