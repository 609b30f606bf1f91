"""Helpers of the business tests: nodes with capacity, request bodies, acting as an agent, reading queues."""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.services import job_keys
from shared import jobs, keys, report_streams

from .conftest import answer, beat, join, stream_consumed
from .tasks_helpers import queued


def add_node(
    client: FlaskClient,
    redis_client: redis_lib.Redis,
    node_id: str,
    cpu: float = 4,
    memory_mb: int = 8192,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    online: bool = True,
    interval: float = 5.0,
    load: float = 10.0,
) -> None:
    """Join ``node_id`` (hostname host-<id>) with these capacity facts; a fresh heartbeat if ``online``."""
    facts: dict[str, Any] = {"cpu_count": cpu, "memory_total_mb": memory_mb, "gpu_count": gpus}
    if labels is not None:
        facts["labels"] = labels
    join(client, node_id, f"host-{node_id}", f"10.0.0.{abs(hash(node_id)) % 250 + 1}", interval, facts=facts)
    if online:
        beat(redis_client, node_id, cpu=load, interval=interval)


def component(cid: str, **extra: Any) -> dict[str, Any]:
    """A process component asking for 1 core and 512 MB unless told otherwise."""
    body: dict[str, Any] = {
        "component_id": cid,
        "component_name": f"{cid}-name",
        "type": "process",
        "command": f"run-{cid}",
        "resource_requirements": {"cpu_cores": 1, "memory_mb": 512, "gpu": False},
    }
    body.update(extra)
    return body


def business(*components: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"business_name": "shop", "components": list(components)}
    body.update(extra)
    return body


def deploy(client: FlaskClient, body: dict[str, Any], expect: int = 201, query: str = "") -> dict[str, Any]:
    return answer(client.post(f"/api/businesses{query}", json=body), expect)


def detail(client: FlaskClient, business_id: str) -> dict[str, Any]:
    return answer(client.get(f"/api/businesses/{business_id}"))


def comp(got: dict[str, Any], cid: str) -> dict[str, Any]:
    for c in got["components"]:
        if c["component_id"] == cid:
            return c
    raise AssertionError(f"no component {cid} in {got['components']}")


def component_jobs(redis_client: redis_lib.Redis, node_id: str) -> list[tuple[str, dict[str, Any]]]:
    """("deploy"|"stop", payload) of the component jobs waiting on a node's queue, oldest first."""
    out = []
    for job in queued(redis_client, node_id):
        if job.func_name == jobs.DEPLOY_COMPONENT:
            out.append(("deploy", job.args[0]))
        elif job.func_name == jobs.STOP_COMPONENT:
            out.append(("stop", job.args[0]))
    return out


def take_jobs(redis_client: redis_lib.Redis, node_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The component jobs of a node's queue, which is then emptied (as an agent that ran them)."""
    found = component_jobs(redis_client, node_id)
    redis_client.delete(f"rq:queue:{keys.node_queue(node_id)}")
    return found


def report(
    redis_client: redis_lib.Redis,
    business_id: str,
    cid: str,
    node_id: str,
    status: str,
    generation: int = 1,
    **extra: Any,
) -> str:
    """A ComponentReport as the agent of ``node_id`` sends it."""
    body = {
        "business_id": business_id,
        "component_id": cid,
        "node_id": node_id,
        "generation": generation,
        "status": status,
        "timestamp": time.time(),
        **extra,
    }
    return report_streams.publish_component_report(redis_client, body, key=job_keys.node_key(node_id))


def consumed(redis_client: redis_lib.Redis, entry_id: str | None, node_id: str = "n1") -> bool:
    """Whether ``node_id``'s reports stream was delivered up to ``entry_id`` and acked."""
    return stream_consumed(redis_client, node_id, entry_id)
