"""Fixtures of the agent tests: a data dir, a node id, a Supervisor and a CommandRunner on the test Redis,
and the real manager for the join tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from rq import Queue
from rq.serializers import JSONSerializer

from shared import api, events, keys
from tests.support import free_port, wait_until
from worker_agent import commands as commands_module
from worker_agent import jobs
from worker_agent import supervisor as supervisor_module
from worker_agent.commands import CommandRunner
from worker_agent.supervisor import Supervisor
from worker_agent.worker import AgentWorker


def kill_recorded_tasks(data_dir: Path) -> None:
    """SIGKILL the process group of every task and command recorded in ``data_dir`` (tests must not leak)."""
    for name, section in (("state.json", "tasks"), ("commands.json", "commands")):
        try:
            records = json.loads((data_dir / name).read_text())[section].values()
        except FileNotFoundError:
            continue
        for rec in records:
            if rec.get("pid"):
                try:
                    os.killpg(rec["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An agent data dir; the task processes recorded in it are killed (and reaped) after the test."""
    path = tmp_path / "agent-data"
    path.mkdir()
    yield path
    kill_recorded_tasks(path)
    # Closed supervisors keep their children's Popen objects; reap them so none lingers as a zombie.
    for left in (supervisor_module._LEFT_RUNNING, commands_module._LEFT_RUNNING):
        for popen in list(left):
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
                left.remove(popen)


@pytest.fixture
def node_id() -> str:
    return uuid.uuid4().hex


def make_supervisor(data_dir: Path, node_id: str, redis: redis_lib.Redis) -> Supervisor:
    """A Supervisor that publishes to the test Redis, with a fast monitor."""
    return Supervisor(data_dir, node_id, lambda event: events.publish(redis, event), poll_interval=0.05)


@pytest.fixture
def supervisor(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> Iterator[Supervisor]:
    """A recovered, monitoring Supervisor registered for the job functions."""
    sup = make_supervisor(data_dir, node_id, redis_client)
    sup.recover()
    sup.start_monitor()
    jobs.register(sup)
    yield sup
    jobs.register(None)
    sup.close()


@pytest.fixture
def commands(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> Iterator[CommandRunner]:
    """A recovered, running CommandRunner on the test Redis, registered for the job functions."""
    runner = CommandRunner(data_dir, node_id, lambda: redis_client)
    runner.recover()
    runner.start()
    jobs.register_commands(runner)
    yield runner
    jobs.register_commands(None)
    runner.close()


def command_reports(redis: redis_lib.Redis, task_id: str | None = None) -> list[dict[str, Any]]:
    """The command reports in the stream, parsed with shared.events.parse_command_report, optionally of one task."""
    parsed = [events.parse_command_report(fields) for _id, fields in redis.xrange(keys.COMMAND_REPORTS_STREAM)]
    return [r for r in parsed if task_id is None or r["task_id"] == task_id]


def final_report(redis: redis_lib.Redis, task_id: str) -> dict[str, Any] | None:
    """The last report of a task if it is a final one."""
    found = command_reports(redis, task_id)
    return found[-1] if found and found[-1]["status"] != "running" else None


def output_lines(redis: redis_lib.Redis, task_id: str) -> list[dict[str, str]]:
    """The entries of a task's live output stream, oldest first."""
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _id, fields in redis.xrange(keys.task_output(task_id))
    ]


def run_payload(task_id: str, command: str, timeout: float = 30, **extra: Any) -> dict[str, Any]:
    """A RunCommandSchema payload."""
    return {"task_id": task_id, "command": command, "timeout": timeout, **extra}


def task_events(redis: redis_lib.Redis, task_id: str | None = None) -> list[dict[str, Any]]:
    """The events in the stream, parsed with shared.events.parse, optionally of one task."""
    parsed = [events.parse(fields) for _id, fields in redis.xrange(keys.EVENTS_STREAM)]
    return [e for e in parsed if task_id is None or e["task_id"] == task_id]


def last_state(redis: redis_lib.Redis, task_id: str) -> dict[str, Any] | None:
    """The last event of a task, or None."""
    found = task_events(redis, task_id)
    return found[-1] if found else None


def state_is(redis: redis_lib.Redis, task_id: str, state: str) -> dict[str, Any] | None:
    """The last event of a task if it is in ``state``."""
    event = last_state(redis, task_id)
    return event if event and event["state"] == state else None


def node_queue(redis: redis_lib.Redis, node_id: str) -> Queue:
    return Queue(keys.node_queue(node_id), connection=redis, serializer=JSONSerializer)


def run_jobs(redis: redis_lib.Redis, node_id: str) -> AgentWorker:
    """Work the node queue in burst mode in-process, then give pytest its signal handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = AgentWorker(node_id, connection=redis)
    try:
        worker.work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return worker


def start_payload(task_id: str, command: str, **extra: Any) -> dict[str, Any]:
    """A StartTaskSchema payload."""
    return {"task_id": task_id, "deployment_id": "dep-1", "name": f"t {task_id}", "command": command, **extra}


class ManagerProcess:
    """The real manager (``python -m manager_api.cli``) on a free port, on the test Redis, data in ``workdir``."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "resource_monitor.db"
        self.log_path = workdir / "manager.log"
        env = {**os.environ, "CORRAL_RUNTIME_DIR": str(workdir / "run")}
        for name in ("CORRAL_API_TOKEN", "CORRAL_JOIN_TOKEN", "CORRAL_LABELS"):
            env.pop(name, None)
        command = [
            sys.executable,
            "-m",
            "manager_api.cli",
            "--port",
            str(self.port),
            "--db-path",
            str(self.db_path),
            "--redis-url",
            redis_url,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def token(self) -> str:
        """The join token the manager made in its data dir."""
        return (self.workdir / "join-token").read_text().strip()

    def healthy(self) -> bool:
        assert self.proc.poll() is None, f"the manager exited:\n{self.log}"
        try:
            with urllib.request.urlopen(self.url + api.HEALTH_PATH, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def rejected(self) -> int:
        """How many joins the manager refused for a bad token (its own log says so)."""
        return self.log.count("refused: bad join token")

    def nodes(self) -> dict[str, dict[str, Any]]:
        """The node rows of the manager's database by id, facts parsed."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT id, hostname, ip, interval, facts FROM node").fetchall()
        return {row["id"]: {**dict(row), "facts": json.loads(row["facts"])} for row in rows}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def manager(tmp_path: Path, redis_url: str) -> Iterator[ManagerProcess]:
    """The real manager on the test Redis, healthy, with its join token in ``tmp_path/join-token``."""
    started = ManagerProcess(tmp_path, redis_url)
    try:
        wait_until(started.healthy, timeout=30, what="the manager to answer /healthz")
        wait_until(lambda: (tmp_path / "join-token").exists(), what="the manager's join token")
        yield started
    finally:
        started.stop()
