"""One agent per data directory, a directory per reported hostname by default, absolute paths for children,
and a health port that another agent already holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from shared.defaults import AGENT_PORT
from tests.support import pid_alive, wait_until
from tests.worker_agent.conftest import kill_recorded_processes, node_queue, start_payload, state_is
from worker_agent import data_dir as data_dir_module
from worker_agent.components.manager import ComponentManager
from worker_agent.data_dir import (
    DataDirInUse,
    DataDirLock,
    default_data_dir,
    default_root,
    path_segment,
    record_hostname,
)
from worker_agent.deployment_tasks.supervisor import Supervisor
from worker_agent.fleet_commands.runner import CommandRunner


class Agent:
    """``python -m worker_agent.cli`` working a test Redis, with exactly the flags a test gives."""

    def __init__(self, log: Path, *args: str, cwd: Path | None = None) -> None:
        self.log_path = log
        env = {**os.environ, "CORRAL_RUNTIME_DIR": str(log.parent / "run")}
        env.pop("CORRAL_JOIN_TOKEN", None)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker_agent.cli", "--interval", "0.5", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def health_port(self) -> int | None:
        """The port the agent says it serves health on, once it said so."""
        for line in self.log.splitlines():
            if "health on 127.0.0.1:" in line:
                return int(line.rsplit("127.0.0.1:", 1)[1].split()[0])
        return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    for agent in agents:
        agent.kill()


def test_the_default_data_dir_follows_the_reported_hostname(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert default_data_dir("vm", "vm", root) == root  # where agents always kept their identity
    assert default_data_dir("node-1", "vm", root) == root / "hosts" / "node-1"
    assert default_data_dir("node-2", "vm", root) == root / "hosts" / "node-2"
    assert default_data_dir("node-1", machine_hostname="vm").parent == default_root() / "hosts"

    # Upgraded from before per-hostname directories: the agent that has its node id in the root keeps it,
    # whatever --hostname it reports, and once it recorded its hostname the root is its own.
    root.mkdir()
    (root / "node-id").write_text("a" * 32 + "\n")
    assert default_data_dir("web-server-01", "vm", root) == root
    record_hostname(root, "web-server-01")
    assert default_data_dir("web-server-01", "vm", root) == root
    assert default_data_dir("vm", "vm", root) == root / "hosts" / "vm"
    assert default_data_dir("other", "vm", root) == root / "hosts" / "other"
    (root / "hosts" / "vm").mkdir(parents=True)
    record_hostname(root, "vm")  # a later agent told --data-dir <root> --hostname vm: the root follows
    assert default_data_dir("vm", "vm", root) == root / "hosts" / "vm"  # its own directory exists: it wins
    for hostile in ("..", ".", "a/../../etc", "x\x00y", ""):
        segment = path_segment(hostile)
        assert segment not in ("", ".", "..") and "/" not in segment and "\x00" not in segment, hostile
    assert path_segment("web-01.example.com") == "web-01.example.com"


def test_a_second_lock_on_one_data_dir_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path).acquire("node-a")
    with pytest.raises(DataDirInUse) as refused:
        DataDirLock(tmp_path).acquire("node-b")
    assert "--data-dir" in str(refused.value) and f"pid {os.getpid()}" in str(refused.value)
    first.release()
    DataDirLock(tmp_path).acquire("node-b").release()


def test_a_second_agent_on_a_data_dir_exits_at_once_naming_data_dir_and_the_dir_is_free_after_a_kill(
    tmp_path: Path, redis_url: str, redis_client: redis_lib.Redis, data_dir: Path, started: list[Agent]
) -> None:
    common = ("--redis-url", redis_url, "--data-dir", str(data_dir), "--port", "0")
    first = Agent(tmp_path / "first.log", *common, "--hostname", "node-a")
    started.append(first)
    wait_until(lambda: first.health_port(), what=f"the first agent to serve health\n{first.log}")
    node_id = (data_dir / "node-id").read_text().strip()

    second = Agent(tmp_path / "second.log", *common, "--hostname", "node-b")
    started.append(second)
    assert second.proc.wait(15) == 1, second.log
    assert "--data-dir" in second.log and f"pid {first.proc.pid}" in second.log, second.log
    assert first.proc.poll() is None, "the running agent is untouched"

    # A task outlives a kill -9 of its agent; it must not keep the directory locked (close-on-exec).
    node_queue(redis_client, node_id).enqueue("worker_agent.jobs.start_task", start_payload("t-long", "sleep 300"))
    pid = wait_until(lambda: state_is(redis_client, "t-long", "RUNNING"), what="the task running")["pid"]
    first.kill()
    assert pid_alive(pid)
    third = Agent(tmp_path / "third.log", *common, "--hostname", "node-a")
    started.append(third)
    wait_until(lambda: third.health_port(), what=f"the restarted agent to serve health\n{third.log}")
    assert third.proc.poll() is None
    assert third.stop() == 0
    kill_recorded_processes(data_dir)


def test_a_relative_data_dir_keeps_exit_codes_even_of_a_task_that_ends_while_the_agent_is_down(
    tmp_path: Path, redis_url: str, redis_client: redis_lib.Redis, started: list[Agent]
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    args = ("--redis-url", redis_url, "--data-dir", "var/agent", "--port", "0", "--hostname", "rel")
    agent = Agent(tmp_path / "rel.log", *args, cwd=workdir)
    started.append(agent)
    data_dir = workdir / "var" / "agent"
    node_id = wait_until(lambda: (data_dir / "node-id").read_text().strip(), what="the node id")
    wait_until(lambda: agent.health_port(), what=f"the agent to serve health\n{agent.log}")
    queue = node_queue(redis_client, node_id)
    try:
        queue.enqueue("worker_agent.jobs.start_task", start_payload("t-exit3", "exit 3"))
        failed = wait_until(lambda: state_is(redis_client, "t-exit3", "FAILED"), what=f"t-exit3 failed\n{agent.log}")
        assert failed["exit_code"] == 3
        assert (data_dir / "tasks" / "t-exit3" / "exit-code").read_text().strip() == "3"
        assert "cannot create" not in (data_dir / "tasks" / "t-exit3" / "stderr.log").read_text()

        queue.enqueue("worker_agent.jobs.start_task", start_payload("t-later", "sleep 1; exit 4"))
        pid = wait_until(lambda: state_is(redis_client, "t-later", "RUNNING"), what="t-later running")["pid"]
        agent.kill()
        wait_until(lambda: not pid_alive(pid), what="t-later to end while its agent is down")
        again = Agent(tmp_path / "rel-again.log", *args, cwd=workdir)
        started.append(again)
        ended = wait_until(lambda: state_is(redis_client, "t-later", "FAILED"), what=f"t-later settled\n{again.log}")
        assert ended["exit_code"] == 4, ended  # read from the exit-code file, not LOST
        assert again.stop() == 0
    finally:
        kill_recorded_processes(data_dir)


def test_the_pieces_that_start_children_hold_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = Path("var/agent")
    supervisor = Supervisor(relative, "n" * 32, lambda event: None)
    runner = CommandRunner(relative, "n" * 32, lambda: None)
    components = ComponentManager(relative, "n" * 32, lambda report: None)
    try:
        for piece in (supervisor, runner, components):
            assert piece.data_dir == tmp_path / "var" / "agent", piece
        assert components.components_dir.is_absolute()
    finally:
        supervisor.close()
        runner.close()
        components.close()


def test_the_default_health_port_taken_by_another_agent_falls_back_to_a_free_one(
    tmp_path: Path, redis_url: str, started: list[Agent]
) -> None:
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", AGENT_PORT))
        holder.listen()
    except OSError:
        pass  # something on this machine holds it already: the agent must fall back all the same
    try:
        common = ("--redis-url", redis_url, "--hostname", "h")
        agent = Agent(tmp_path / "fallback.log", *common, "--data-dir", str(tmp_path / "a"))
        started.append(agent)
        port = wait_until(lambda: agent.health_port(), what=f"the agent to serve health\n{agent.log}")
        assert port != AGENT_PORT
        assert f"health port {AGENT_PORT} is taken" in agent.log
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200

        explicit = Agent(tmp_path / "explicit.log", *common, "--data-dir", str(tmp_path / "b"), "--port", str(port))
        started.append(explicit)
        assert explicit.proc.wait(15) == 1
        assert "Address already in use" in explicit.log and "--port 0" in explicit.log, explicit.log
        assert agent.stop() == 0
    finally:
        holder.close()


def test_lock_file_names_its_holder(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path).acquire("node-a")
    try:
        assert (tmp_path / data_dir_module.LOCK_FILE).read_text() == f"pid {os.getpid()}, agent of hostname node-a\n"
    finally:
        lock.release()
