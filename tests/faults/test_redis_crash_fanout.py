"""Fault: the private redis-server is killed (kill -9) while fleet tasks fan out to 3 agents.

Whatever Redis loses, every task the API accepted (2xx) ends final with its true outcome: a command that ran
is reported with its real result (its agent sends the report again until the manager acknowledged it), one
that never ran is reported failed or timed out; no command runs twice, none runs after its host was final.

Two cases. A kill -9 alone loses nothing Redis had answered: with appendfsync everysec each write reaches the
operating system before its reply, and only the fsync waits. The worst case is a machine crash, or a
failover to a replica that lagged: the writes of the last second are gone. The second test makes that
happen: it keeps a copy of the append-only files, lets the fleet run on, kills Redis and puts the copy back,
so the manager's restart loads Redis as it was a moment before.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psutil
import pytest
import redis as redis_lib
import requests

from shared import keys, report_streams
from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import pid_alive, wait_until

pytestmark = pytest.mark.e2e

TASKS = 20
AGENTS = 3
TIMEOUT = 15  # seconds, each task's: the manager gives up on a silent host at timeout + slack
ROOMY_TIMEOUT = 120  # for tasks that must all succeed: their deadline must not pass on a loaded machine


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Manager, list[Agent], Path]]:
    env = isolated_env(tmp_path)
    runs = tmp_path / "runs.log"
    manager = Manager(tmp_path, env)
    manager.start()
    agents = [Agent(tmp_path, {**env, "FAULT_NODE": f"fan-{i}"}, manager, f"fan-{i}", 0.5) for i in range(AGENTS)]
    for agent in agents:
        agent.start()
    try:
        yield manager, agents, runs
    finally:
        for proc in [*agents, manager]:
            if proc.alive():
                proc.terminate()


def nodes_online(manager: Manager) -> bool:
    try:
        answer = manager.get("/api/task/node")
    except requests.RequestException:
        return False
    nodes = answer.json()["nodes"] if answer.status_code == 200 else []
    return len(nodes) == AGENTS and all(node["status"] == 0 for node in nodes)


def private_redis(manager: Manager) -> psutil.Process:
    [found] = [p for p in psutil.Process(manager.pid).children() if p.name() == "redis-server"]
    return found


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def wait_all_final(manager: Manager, task_ids: list[str], wait: float = TIMEOUT + 60) -> dict[str, dict[str, Any]]:
    """Each task's detail once every one is final (the manager gives up on silent hosts at their deadline)."""

    def task(task_id: str) -> dict[str, Any] | None:
        try:
            answer = manager.get(f"/api/tasks/{task_id}")
        except requests.RequestException:
            return None
        return answer.json() if answer.status_code == 200 else None

    def all_final() -> dict[str, dict[str, Any]] | None:
        found = {task_id: task(task_id) for task_id in task_ids}
        done = {task_id: t for task_id, t in found.items() if t is not None and t["finished_at"]}
        return done if len(done) == len(task_ids) else None

    found = wait_until(all_final, timeout=wait, interval=0.5, what=f"every task final\n{manager.output()[-3000:]}")
    assert found is not None
    return found


def check_outcomes(tasks: dict[str, dict[str, Any]], runs: Path) -> tuple[Counter[str], list[str]]:
    """Compare every host's reported outcome with what the command's own record says happened."""
    started: Counter[tuple[str, str]] = Counter()
    start_time: dict[tuple[str, str], float] = {}
    for line in runs.read_text().splitlines() if runs.exists() else []:
        task_id, node, when = line.split()
        started[(task_id, node)] += 1
        start_time[(task_id, node)] = float(when)
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    for task_id, detail in tasks.items():
        hosts = detail["hosts"]
        assert len(hosts) == AGENTS, (detail["name"], hosts)  # "*" was every node, Redis restarted or not
        for host in hosts:
            key = (task_id, host["hostname"])
            ran = started[key]
            outcomes[host["status"] if ran else f"{host['status']} (never ran)"] += 1
            if ran > 1:
                wrong.append(f"{key} ran {ran} times")
            elif ran == 1 and (host["status"], host["exit_code"], host["stdout"]) != ("succeeded", 0, "ran\n"):
                wrong.append(f"{key} ran and succeeded but reads {host['status']}: {host['error_message']}")
            elif ran == 1 and start_time[key] > at(host["finished_at"]):
                wrong.append(f"{key} started after it was final")
            elif not ran and host["status"] == "succeeded":
                wrong.append(f"{key} never ran but reads succeeded")
    return outcomes, wrong


def finals_in_stream(client: redis_lib.Redis) -> int:
    """How many final command reports the nodes' reports streams hold."""
    count = 0
    for stream in client.scan_iter(match=keys.node_reports("*")):
        node_id = stream.decode().split(":")[2]  # corral:node:<id>:reports
        for _id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream)):
            kind, report = report_streams.parse_report(fields, node_id)
            count += kind == report_streams.COMMAND and report["status"] != "running"
    return count


def recording(runs: Path, gate: Path | None = None) -> str:
    """A command that leaves one line per run (task, node, start time: the agent's environment names the
    node) and prints "ran"; given ``gate``, it first waits for that file."""
    wait = f"while [ ! -e {gate} ]; do sleep 0.02; done; " if gate else ""
    return f'{wait}echo "$CORRAL_TASK_ID $FAULT_NODE $(date +%s.%N)" >> {runs}; echo ran'


def test_every_accepted_task_ends_with_its_true_outcome_across_a_redis_crash(
    fleet: tuple[Manager, list[Agent], Path],
) -> None:
    manager, agents, runs = fleet
    wait_until(lambda: nodes_online(manager), timeout=30, what="three nodes online")
    command = recording(runs)

    accepted: list[str] = []
    refused: list[int] = []

    def fan_out() -> None:
        # As a deploy script would: a task refused while Redis is down (503) is asked again until accepted.
        for i in range(TASKS):
            body = {"name": f"fan-{i}", "command": command, "targets": ["*"], "timeout": TIMEOUT}
            give_up = time.monotonic() + 60
            while time.monotonic() < give_up:
                try:
                    answer = manager.post("/api/tasks", body)
                except requests.RequestException:
                    refused.append(0)
                    continue
                if answer.status_code in (200, 201, 202):
                    accepted.append(answer.json()["task_id"])
                    break
                assert answer.status_code == 503, answer.text  # Redis down: refused, never a 500
                refused.append(answer.status_code)
                time.sleep(0.1)  # a client's retry pause, not a synchronization
            time.sleep(0.05)  # the pace of a fan-out script

    sender = threading.Thread(target=fan_out)
    sender.start()
    wait_until(lambda: len(accepted) >= TASKS // 3, timeout=30, interval=0.01, what="the fan-out under way")
    os.kill(private_redis(manager).pid, signal.SIGKILL)
    killed_at = time.time()
    sender.join(timeout=120)
    assert not sender.is_alive()

    tasks = wait_all_final(manager, accepted)
    assert manager.alive(), manager.output()

    outcomes, wrong = check_outcomes(tasks, runs)
    resent = sum(agent.output().count("reports again") for agent in agents)
    print(
        f"\n{len(accepted)} tasks accepted, {len(refused)} refusals while Redis was down; hosts: {dict(outcomes)}; "
        f"{resent} re-sendings by agents; all final {time.time() - killed_at:.1f} s after the kill"
    )
    assert not wrong, "\n".join(wrong)
    assert len(accepted) == TASKS


def test_reports_lost_with_redis_last_second_are_sent_again(fleet: tuple[Manager, list[Agent], Path]) -> None:
    manager, agents, runs = fleet
    wait_until(lambda: nodes_online(manager), timeout=30, what="three nodes online")
    gate = runs.with_name("go")
    accepted = []
    for i in range(TASKS):
        # A deadline far off: every command must run and succeed however long the fan-out takes here.
        body = {"name": f"lost-{i}", "command": recording(runs, gate), "targets": ["*"], "timeout": ROOMY_TIMEOUT}
        answer = manager.post("/api/tasks", body)
        assert answer.status_code in (200, 201, 202), answer.text
        accepted.append(answer.json()["task_id"])

    def all_running() -> bool:
        details = [manager.get(f"/api/tasks/{task_id}").json() for task_id in accepted]
        return all(host["status"] == "running" for detail in details for host in detail["hosts"])

    wait_until(all_running, timeout=60, interval=0.2, what="every command started")
    # Redis as the disk holds it now: what follows is the "last second" the worst case loses.
    aof = manager.db_path.parent / "corral-redis" / "appendonlydir"
    snapshot = runs.with_name("aof-snapshot")
    shutil.copytree(aof, snapshot)
    # The manager's duties are held still (SIGSTOP; its gunicorn workers go on), so that every final
    # report is in Redis and none applied when Redis loses them all.
    os.kill(manager.pid, signal.SIGSTOP)
    try:
        gate.touch()
        admin = redis_lib.Redis.from_url(manager.redis_url())
        wait_until(lambda: finals_in_stream(admin) >= TASKS * AGENTS, timeout=30, what="every final report sent")
        admin.close()
        redis = private_redis(manager)
        os.kill(redis.pid, signal.SIGKILL)
        wait_until(
            lambda: not pid_alive(redis.pid), timeout=10, what="redis-server dead"
        )  # a zombie: its parent is stopped
        shutil.rmtree(aof)
        shutil.copytree(snapshot, aof)
    finally:
        os.kill(manager.pid, signal.SIGCONT)
    killed_at = time.time()

    # Well before their deadline: without the agents' re-sending, nothing would end these hosts by then.
    tasks = wait_all_final(manager, accepted, wait=60)
    outcomes, wrong = check_outcomes(tasks, runs)
    resent = sum(agent.output().count("reports again") for agent in agents)
    print(
        f"\n{len(accepted)} tasks on {AGENTS} agents, Redis rolled back to before their end; hosts: {dict(outcomes)}; "
        f"{resent} re-sendings by agents; all final {time.time() - killed_at:.1f} s after the kill"
    )
    assert not wrong, "\n".join(wrong)
    # Each ran after the snapshot, and each final report was lost with Redis before the manager applied it.
    assert outcomes["succeeded"] == TASKS * AGENTS, dict(outcomes)


def test_jobs_lost_with_redis_last_second_are_sent_again(fleet: tuple[Manager, list[Agent], Path]) -> None:
    manager, agents, runs = fleet
    wait_until(lambda: nodes_online(manager), timeout=30, what="three nodes online")
    aof = manager.db_path.parent / "corral-redis" / "appendonlydir"
    snapshot = runs.with_name("aof-snapshot")
    # The agents are held still (well within their offline window) so that none takes a job before Redis
    # loses them all: the tasks are accepted, their jobs enqueued after the snapshot Redis comes back as.
    for agent in agents:
        os.kill(agent.pid, signal.SIGSTOP)
    try:
        shutil.copytree(aof, snapshot)
        accepted = []
        for i in range(5):
            body = {"name": f"enqueued-{i}", "command": recording(runs), "targets": ["*"], "timeout": ROOMY_TIMEOUT}
            answer = manager.post("/api/tasks", body)
            assert answer.status_code in (200, 201, 202), answer.text
            accepted.append(answer.json()["task_id"])
        redis = private_redis(manager)
        os.kill(redis.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(redis.pid), timeout=10, what="redis-server dead")
        shutil.rmtree(aof)
        shutil.copytree(snapshot, aof)
    finally:
        for agent in agents:
            os.kill(agent.pid, signal.SIGCONT)
    killed_at = time.time()

    tasks = wait_all_final(manager, accepted, wait=60)  # well before their deadline, as above
    outcomes, wrong = check_outcomes(tasks, runs)
    print(
        f"\n{len(accepted)} tasks whose jobs Redis lost; hosts: {dict(outcomes)}; "
        f"all final {time.time() - killed_at:.1f} s after the kill"
    )
    assert not wrong, "\n".join(wrong)
    assert outcomes["succeeded"] == len(accepted) * AGENTS, dict(outcomes)  # sent again, each ran once
    assert "RUN_COMMAND sent again" in manager.output()
