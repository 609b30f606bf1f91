"""Fixtures of the agent tests: a data dir, a node id, a Supervisor and a CommandRunner on the test Redis,
and the real manager for the join tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis as redis_lib
from rq import Queue
from rq.serializers import JSONSerializer

from shared import job_signing, keys, report_streams
from tests.e2e.harness import Manager, isolated_env
from tests.support import command_records, wait_until
from worker_agent import jobs, process_tree
from worker_agent.deployment_tasks.supervisor import Supervisor
from worker_agent.fleet_commands.runner import CommandRunner
from worker_agent.worker import AgentWorker

STATE_FILES = (
    ("state.json", "tasks"),
    ("components.json", "components"),
    ("apps.json", "instances"),
)
"""The agent's state files in its data dir, with the section that holds their records (the commands' are a
journal: tests.support.command_records)."""


def kill_recorded_processes(data_dir: Path) -> None:
    """SIGKILL the process group of every task, command, component and app instance recorded in ``data_dir`` (tests must
    not leak)."""
    every = [command_records(data_dir).values()]
    for name, section in STATE_FILES:
        try:
            every.append(json.loads((data_dir / name).read_text())[section].values())
        except FileNotFoundError:
            continue
    for records in every:
        for rec in records:
            if rec.get("pid"):
                try:
                    os.killpg(rec["pid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """An agent data dir; the processes recorded in it are killed (and reaped) after the test."""
    path = tmp_path / "agent-data"
    path.mkdir()
    yield path
    kill_recorded_processes(path)
    # Closed supervisors keep their children's Popen objects; reap them so none lingers as a zombie.
    for popen in list(process_tree.LEFT_RUNNING):
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
            process_tree.LEFT_RUNNING.remove(popen)


@pytest.fixture
def node_id() -> str:
    return uuid.uuid4().hex


def make_supervisor(data_dir: Path, node_id: str, redis: redis_lib.Redis) -> Supervisor:
    """A Supervisor that publishes to the test Redis, with a fast monitor."""
    return Supervisor(data_dir, node_id, lambda event: report_streams.publish(redis, event), poll_interval=0.05)


class Watcher(Protocol):
    def recover(self) -> None: ...
    def start_monitor(self) -> None: ...
    def close(self) -> None: ...


W = TypeVar("W", bound=Watcher)


@contextlib.contextmanager
def watching(watcher: W, register: Callable[[W | None], None]) -> Iterator[W]:
    """``watcher`` (a Supervisor or a ComponentManager) recovered, monitoring and registered for the job
    functions with ``register`` for the block; unregistered and closed after it, as the agent does."""
    watcher.recover()
    watcher.start_monitor()
    register(watcher)
    try:
        yield watcher
    finally:
        register(None)
        watcher.close()


@pytest.fixture
def supervisor(data_dir: Path, node_id: str, redis_client: redis_lib.Redis) -> Iterator[Supervisor]:
    """A recovered, monitoring Supervisor registered for the job functions."""
    with watching(make_supervisor(data_dir, node_id, redis_client), jobs.register) as sup:
        yield sup


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


def node_reports(redis: redis_lib.Redis, kind: str) -> list[dict[str, Any]]:
    """The reports of ``kind`` in every node's reports stream (parsed by shared.report_streams), oldest first."""
    found = []
    for stream in redis.scan_iter(match=keys.node_reports("*")):
        for entry_id, fields in redis.xrange(stream):
            node_id = json.loads(fields[b"body"])["node_id"]  # parse_report checks it is the stream's
            entry_kind, report = report_streams.parse_report(fields, node_id)
            if entry_kind == kind:
                found.append((tuple(int(part) for part in entry_id.decode().split("-")), report))
    return [report for _order, report in sorted(found, key=lambda pair: pair[0])]


def command_reports(redis: redis_lib.Redis, task_id: str | None = None) -> list[dict[str, Any]]:
    """The command reports in the streams, optionally of one task."""
    return [r for r in node_reports(redis, report_streams.COMMAND) if task_id is None or r["task_id"] == task_id]


def final_report(redis: redis_lib.Redis, task_id: str) -> dict[str, Any] | None:
    """The last report of a task if it is a final one."""
    found = command_reports(redis, task_id)
    return found[-1] if found and found[-1]["status"] != "running" else None


def output_lines(redis: redis_lib.Redis, task_id: str, node_id: str) -> list[dict[str, str]]:
    """The entries of a node's live output stream of a task, oldest first."""
    stream = keys.task_output(task_id, node_id)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in redis.xrange(stream)]


def run_payload(task_id: str, command: str, timeout: float = 30, **extra: Any) -> dict[str, Any]:
    """A RunCommandSchema payload."""
    return {"task_id": task_id, "command": command, "timeout": timeout, **extra}


def task_events(redis: redis_lib.Redis, task_id: str | None = None) -> list[dict[str, Any]]:
    """The task events in the streams, optionally of one task."""
    return [e for e in node_reports(redis, report_streams.EVENT) if task_id is None or e["task_id"] == task_id]


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


def run_jobs(redis: redis_lib.Redis, node_id: str, job_key: bytes | None = None) -> AgentWorker:
    """Work the node queue in burst mode in-process, then give pytest its signal handlers back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = AgentWorker(node_id, connection=redis, job_key=job_key)
    try:
        worker.work(burst=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return worker


def start_payload(task_id: str, command: str, **extra: Any) -> dict[str, Any]:
    """A StartTaskSchema payload."""
    return {"task_id": task_id, "deployment_id": "dep-1", "name": f"t {task_id}", "command": command, **extra}


class ManagerProcess(Manager):
    """The real manager on the test Redis (tests/e2e/harness.py), with what the agent tests read of it."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        env = isolated_env(workdir)
        env.pop("CORRAL_LABELS", None)
        super().__init__(workdir, env, ["--redis-url", redis_url])

    @property
    def token(self) -> str:
        """The join token the manager made in its data dir."""
        return (self.db_path.parent / "join-token").read_text().strip()

    def rejected(self) -> int:
        """How many joins the manager refused for a bad token (its own log says so)."""
        return self.output().count("refused: bad join token")

    def job_key(self, node_id: str) -> bytes:
        """The key the manager signs ``node_id``'s jobs with (its master key is in its database)."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            (master,) = db.execute("SELECT value FROM manager_key WHERE name = 'job-signing'").fetchone()
        return job_signing.node_key(bytes.fromhex(master), node_id)

    def nodes(self) -> dict[str, dict[str, Any]]:
        """The node rows of the manager's database by id, facts parsed."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT id, hostname, ip, interval, facts FROM node").fetchall()
        return {row["id"]: {**dict(row), "facts": json.loads(row["facts"])} for row in rows}


@pytest.fixture
def manager(tmp_path: Path, redis_url: str) -> Iterator[ManagerProcess]:
    """The real manager on the test Redis, healthy, with its join token made."""
    started = ManagerProcess(tmp_path, redis_url)
    started.start()
    try:
        wait_until(lambda: (started.db_path.parent / "join-token").exists(), what="the manager's join token")
        yield started
    finally:
        if started.alive():
            started.terminate()
