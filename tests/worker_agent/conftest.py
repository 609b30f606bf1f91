"""Fixtures of the agent tests: a data dir, a node id, a Supervisor publishing to the test Redis."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from rq import Queue
from rq.serializers import JSONSerializer

from shared import events, keys
from worker_agent import jobs
from worker_agent import supervisor as supervisor_module
from worker_agent.supervisor import Supervisor
from worker_agent.worker import AgentWorker


def kill_recorded_tasks(data_dir: Path) -> None:
    """SIGKILL the process group of every task recorded in ``data_dir`` (tests must not leak processes)."""
    try:
        records = json.loads((data_dir / "state.json").read_text())["tasks"].values()
    except FileNotFoundError:
        return
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
    for popen in list(supervisor_module._LEFT_RUNNING):
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
            supervisor_module._LEFT_RUNNING.remove(popen)


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
