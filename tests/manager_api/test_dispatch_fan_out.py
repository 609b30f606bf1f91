"""dispatch's fan-out (one RQ Job given each node's id and signature): each node's job is what RQ's own
queue.enqueue stores, on that node's queue, signed for that node alone."""

from __future__ import annotations

import zlib
from typing import Any

import redis as redis_lib
from flask import Flask

from manager_api.services import dispatch, job_keys
from shared import defaults, job_signing, jobs, keys, secret_env

from .tasks_helpers import queued

NODES = ["n1", "n2", "n3"]
PAYLOAD = {"task_id": "t1", "command": "echo hi", "timeout": 60, "env": {"A": "1"}}
TIMES = {"created_at", "enqueued_at"}


def _stored(redis_client: redis_lib.Redis, job_id: str) -> dict[str, Any]:
    return {key.decode(): value for key, value in redis_client.hgetall(f"rq:job:{job_id}").items()}


def _verified(job: Any, node_id: str) -> bool:
    signature = job.meta[job_signing.META_FIELD]
    return job_signing.verify(
        job_keys.node_key(node_id), signature, job.func_name, job.args, job.kwargs, job.id, job.origin
    )


def test_each_node_gets_the_job_rq_would_store_signed_for_it(app: Flask, redis_client: redis_lib.Redis) -> None:
    with app.app_context():
        job_ids = dispatch.run_command(redis_client, NODES, PAYLOAD)
        assert len(set(job_ids)) == 3
        jobs_by_node = {node_id: queued(redis_client, node_id) for node_id in NODES}
        for node_id, job_id in zip(NODES, job_ids, strict=True):
            (job,) = jobs_by_node[node_id]
            assert job.id == job_id and job_id.startswith(node_id + keys.JOB_ID_SEPARATOR)
            assert job.origin == keys.node_queue(node_id) and job.func_name == jobs.RUN_COMMAND
            assert _verified(job, node_id)
            assert not any(_verified(job, other) for other in NODES if other != node_id)
        # Field by field what queue.enqueue stores for the same job (its own id, times and signature apart).
        (job,) = jobs_by_node["n1"]
        reference = dispatch.node_queue(redis_client, "n1").enqueue(
            jobs.RUN_COMMAND,
            args=(job.args[0],),
            job_id="n1_reference",
            meta=job.meta,
            description=job.description,
            result_ttl=defaults.JOB_RESULT_TTL,
            failure_ttl=defaults.JOB_FAILURE_TTL,
        )
        ours, theirs = _stored(redis_client, job.id), _stored(redis_client, reference.id)
        assert zlib.decompress(ours.pop("data")) == zlib.decompress(theirs.pop("data"))
        assert {k: v for k, v in ours.items() if k not in TIMES} == {k: v for k, v in theirs.items() if k not in TIMES}
        queues = {member.decode() for member in redis_client.smembers("rq:queues")}
        assert {f"rq:queue:{keys.node_queue(node_id)}" for node_id in NODES} <= queues


def test_sealed_secrets_differ_per_node_and_open_only_there(app: Flask, redis_client: redis_lib.Redis) -> None:
    with app.app_context():
        dispatch.run_command(redis_client, NODES, {**PAYLOAD, "secret_env": {"TOKEN": "s3cr3t"}})
        sealed = set()
        for node_id in NODES:
            (job,) = queued(redis_client, node_id)
            assert _verified(job, node_id)
            body = job.args[0]
            sealed.add(body["secret_env"])
            opened = secret_env.open_sealed(job_keys.node_key(node_id), "task:t1", body["secret_env"])
            assert opened == {"TOKEN": "s3cr3t"}
        assert len(sealed) == 3
