"""Helpers of the apps tests: app bodies, the jobs an app sends, and a test agent that reports instances."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient
from rq import Queue
from rq.serializers import JSONSerializer

from manager_api.services import job_keys
from shared import jobs, keys, report_streams

from .conftest import answer
from .tasks_helpers import queued


def app_body(name: str = "web", **extra: Any) -> dict[str, Any]:
    """An app running `python http_server.py` with one port, one instance unless told otherwise."""
    body: dict[str, Any] = {"name": name, "toProcess": "python", "args": ["http_server.py"], "ports": [0]}
    body.update(extra)
    return body


def create(client: FlaskClient, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
    return answer(client.post("/api/apps", json=body), expect)


def show(client: FlaskClient, name: str = "web") -> dict[str, Any]:
    return answer(client.get(f"/api/apps/{name}"))


def wanted(got: dict[str, Any]) -> list[dict[str, Any]]:
    """The instances the manager wants running (not those being stopped)."""
    return [i for i in got["instances"] if i["desired"] == "run"]


def instance_jobs(redis_client: redis_lib.Redis, node_id: str) -> list[tuple[str, dict[str, Any]]]:
    """("run"|"stop", payload) of the instance jobs waiting on a node's queue, oldest first."""
    out = []
    for job in queued(redis_client, node_id):
        if job.func_name == jobs.RUN_INSTANCE:
            out.append(("run", job.args[0]))
        elif job.func_name == jobs.STOP_INSTANCE:
            out.append(("stop", job.args[0]))
    return out


def take(redis_client: redis_lib.Redis, node_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The instance jobs of a node's queue, popped one by one as an agent's worker does (reading the queue and
    then deleting it would lose a job the duties enqueue in between)."""
    out = []
    queue = Queue(keys.node_queue(node_id), connection=redis_client, serializer=JSONSerializer)
    while (raw := redis_client.lpop(queue.key)) is not None:
        job = queue.fetch_job(raw.decode() if isinstance(raw, bytes) else str(raw))
        if job is None:
            continue
        if job.func_name == jobs.RUN_INSTANCE:
            out.append(("run", job.args[0]))
        elif job.func_name == jobs.STOP_INSTANCE:
            out.append(("stop", job.args[0]))
    return out


def report(
    redis_client: redis_lib.Redis,
    app: str,
    instance_id: str,
    node_id: str,
    state: str = "running",
    health: str = "healthy",
    version: int = 1,
    **extra: Any,
) -> str:
    """An InstanceReport as the agent of ``node_id`` sends it (signed with its key)."""
    body = {
        "app": app,
        "instance_id": instance_id,
        "node_id": node_id,
        "version": version,
        "state": state,
        "health": health,
        "at": time.time(),
        **extra,
    }
    entry = report_streams.publish_instance_report(redis_client, body, key=job_keys.node_key(node_id))
    assert entry is not None
    return entry


class Agent:
    """A test agent for many nodes: takes their instance jobs and reports the runs running (with a pid
    and ports) and the stops stopped, as worker_agent does."""

    def __init__(self, redis_client: redis_lib.Redis, health: str = "healthy") -> None:
        self.redis = redis_client
        self.health = health
        self.running: dict[str, tuple[str, dict[str, Any]]] = {}  # instance id -> (node id, spec)
        self.pid = 1000

    def serve(self, node_ids: list[str], report_runs: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
        """Take every node's jobs and answer them; returns (node, kind, payload) taken."""
        taken = []
        for node_id in node_ids:
            for kind, payload in take(self.redis, node_id):
                taken.append((node_id, kind, payload))
                if kind == "run" and report_runs:
                    self.pid += 1
                    self.running[payload["instance_id"]] = (node_id, payload)
                    ports = [p or 20000 + self.pid % 1000 for p in payload["ports"]]
                    report(
                        self.redis,
                        payload["app"],
                        payload["instance_id"],
                        node_id,
                        health=self.health,
                        version=payload["version"],
                        pid=self.pid,
                        ports=ports,
                        started_at=time.time(),
                    )
                elif kind == "stop":
                    self.running.pop(payload["instance_id"], None)
                    report(self.redis, payload["app"], payload["instance_id"], node_id, "stopped", "unknown")
        return taken
