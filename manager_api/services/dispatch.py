"""Sending work to agents: RQ jobs by name, JSON-serialized, on each node's own queue."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from manager_api.observability.instruments import dispatch_duration
from manager_api.services import job_keys
from shared import defaults, heartbeat, job_signing, jobs, keys, secret_env
from shared.messages import (
    AgentScheduleSetSchema,
    CancelCommandSchema,
    ComponentSpecSchema,
    InstanceSpecSchema,
    RunCommandSchema,
    StartTaskSchema,
    StopComponentSchema,
    StopInstanceSchema,
    StopTasksSchema,
    dump,
)

logger = logging.getLogger(__name__)

_clock = heartbeat.RedisClock()
"""Redis's clock for the jobs' deadlines (one process, one Redis: one offset)."""


def node_queue(redis: Redis, node_id: str) -> Queue:
    """The RQ queue that only ``node_id``'s agent consumes."""
    return Queue(keys.node_queue(node_id), connection=redis, serializer=JSONSerializer)


@contextmanager
def _timed(function: str) -> Iterator[None]:
    """Observe how long the enqueueing inside takes, under the job's short name (``run_command``)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        dispatch_duration.labels(function.rpartition(".")[2]).observe(time.perf_counter() - started)


def _enqueue(
    redis: Redis, node_id: str, function: str, body: dict[str, Any], description: str, pipeline: Pipeline | None = None
) -> str:
    """Enqueue ``function`` by name with one validated dict argument on ``node_id``'s queue, signed with the
    node's key (the agent refuses anything else); returns the job id."""
    queue = node_queue(redis, node_id)
    job_id = keys.node_job_id(node_id, uuid.uuid4().hex)
    signature = job_signing.sign(job_keys.node_key(node_id), function, [body], {}, job_id, queue.name)
    job = queue.enqueue(
        function,
        args=(body,),
        job_id=job_id,
        meta={job_signing.META_FIELD: signature},
        description=description,
        result_ttl=defaults.JOB_RESULT_TTL,
        failure_ttl=defaults.JOB_FAILURE_TTL,
        pipeline=pipeline,
    )
    return str(job.id)


def start_task(redis: Redis, node_id: str, payload: dict[str, Any]) -> str:
    """Enqueue jobs.START_TASK for one task; returns the job id."""
    body = dump(StartTaskSchema, payload)
    with _timed(jobs.START_TASK):
        job_id = _enqueue(
            redis,
            node_id,
            jobs.START_TASK,
            body,
            f"start task {body['task_id']} of deployment {body['deployment_id']}",
        )
    logger.info(
        "task %s of deployment %s sent to node %s (job %s)", body["task_id"], body["deployment_id"], node_id, job_id
    )
    return job_id


def stop_tasks(redis: Redis, node_id: str, deployment_id: str, task_ids: list[str], grace_seconds: float) -> str:
    """Enqueue jobs.STOP_TASKS for some tasks of one deployment on one node; returns the job id."""
    body = dump(StopTasksSchema, {"task_ids": task_ids, "deployment_id": deployment_id, "grace_seconds": grace_seconds})
    with _timed(jobs.STOP_TASKS):
        job_id = _enqueue(redis, node_id, jobs.STOP_TASKS, body, f"stop {len(task_ids)} tasks of {deployment_id}")
    logger.info(
        "deployment %s: stop of tasks %s sent to node %s (job %s)", deployment_id, ",".join(task_ids), node_id, job_id
    )
    return job_id


def _fan_out(
    redis: Redis, pipe: Pipeline, node_ids: list[str], function: str, bodies: Iterable[dict[str, Any]], description: str
) -> list[str]:
    """``function`` on each node's queue with that node's body, queued on ``pipe``; returns the job ids.

    The jobs differ only by id, queue, signature (and a sealed body): one RQ Job is created and given each
    node's id, meta (and args) before RQ's enqueue_job saves and pushes it, rather than RQ building a Job from
    keyword arguments per node (a Job's construction checks its serializer against a typing Protocol, slow on
    Python 3.11, and the body's JSON is made and compressed again). What RQ writes per job is unchanged.
    """
    job = Job.create(
        function,
        args=(),
        connection=redis,
        serializer=JSONSerializer,
        status=JobStatus.QUEUED,
        description=description,
        result_ttl=defaults.JOB_RESULT_TTL,
        failure_ttl=defaults.JOB_FAILURE_TTL,
    )
    job_ids = []
    sign: Callable[[bytes, str, str], str] | None = None  # job_signing.signer of the current body
    for node_id, body in zip(node_ids, bodies, strict=True):
        if sign is None or job.args[0] is not body:
            job.args = (body,)  # RQ serializes the args again only when they change
            sign = job_signing.signer(function, [body], {})
        queue = node_queue(redis, node_id)
        job.id = keys.node_job_id(node_id, uuid.uuid4().hex)
        job.meta = {job_signing.META_FIELD: sign(job_keys.node_key(node_id), job.id, queue.name)}
        queue.enqueue_job(job, pipeline=pipe)
        job_ids.append(job.id)
    return job_ids


def _enqueue_on_nodes(
    redis: Redis, node_ids: Iterable[str], function: str, body: dict[str, Any], description: str
) -> list[str]:
    """The same job on many nodes' queues in one pipeline (one round trip for a thousand nodes)."""
    ids = list(node_ids)
    if not ids:
        return []
    with _timed(function), redis.pipeline() as pipe:
        job_ids = _fan_out(redis, pipe, ids, function, (body for _ in ids), description)
        pipe.execute()
    return job_ids


def _enqueue_sealed(
    redis: Redis, node_ids: Iterable[str], body: dict[str, Any], secret: dict[str, str], context: str, description: str
) -> list[str]:
    """RUN_COMMAND on many nodes in one pipeline, each body with ``secret`` sealed for its node."""
    ids = list(node_ids)
    if not ids:
        return []
    bodies = ({**body, "secret_env": secret_env.seal(job_keys.node_key(node_id), context, secret)} for node_id in ids)
    with _timed(jobs.RUN_COMMAND), redis.pipeline() as pipe:
        job_ids = _fan_out(redis, pipe, ids, jobs.RUN_COMMAND, bodies, description)
        pipe.execute()
    return job_ids


def run_command(
    redis: Redis, node_ids: Iterable[str], payload: dict[str, Any], seconds_left: float | None = None
) -> list[str]:
    """Enqueue jobs.RUN_COMMAND of one fleet task on every node of ``node_ids``; returns the job ids.

    Each job carries its deadline on Redis's clock, now + the task's timeout (or + ``seconds_left`` when it
    is sent again): an agent that takes it later (a backlog, a worker that reconnected late) reports it
    expired instead of running it, so nothing runs after the duties gave up on the host (at the same
    deadline plus DEADLINE_SLACK_SECONDS).
    """
    left = float(payload["timeout"]) if seconds_left is None else seconds_left
    # Only a sealed form goes on the wire (added per node below); a task without secrets sends no such field.
    secret = payload.get("secret_env") or {}
    payload = {**{k: v for k, v in payload.items() if k != "secret_env"}, "deadline": _clock.now(redis) + left}
    body = dump(RunCommandSchema, payload)
    body.pop("secret_env", None)  # dump fills in its load_default (None): the wire of a task without secrets stays
    if body.get("script") is None:
        body.pop("script", None)  # likewise: a plain command's wire is as it was before scripts
    description = f"run fleet task {body['task_id']}"
    if secret:
        # One body per node: the secrets sealed with that node's key, so Redis holds no plaintext.
        job_ids = _enqueue_sealed(redis, node_ids, body, secret, f"task:{body['task_id']}", description)
    else:
        job_ids = _enqueue_on_nodes(redis, node_ids, jobs.RUN_COMMAND, body, description)
    logger.debug("fleet task %s sent to %d nodes", body["task_id"], len(job_ids))  # the start's line counts them
    return job_ids


def cancel_command(redis: Redis, node_ids: Iterable[str], task_id: str) -> list[str]:
    """Enqueue jobs.CANCEL_COMMAND of one fleet task on every node of ``node_ids``; returns the job ids."""
    body = dump(CancelCommandSchema, {"task_id": task_id})
    job_ids = _enqueue_on_nodes(redis, node_ids, jobs.CANCEL_COMMAND, body, f"cancel fleet task {task_id}")
    logger.info("cancel of fleet task %s sent to %d nodes", task_id, len(job_ids))
    return job_ids


def sync_agent_schedules(redis: Redis, version: int, sets: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Enqueue jobs.SYNC_AGENT_SCHEDULES with each node's full set of agent-side schedules, in one pipeline.

    No TTL (RQ's default): a node offline now finds the job in its queue when it comes back."""
    bodies = [dump(AgentScheduleSetSchema, {"version": version, "schedules": sets[node_id]}) for node_id in sets]
    with _timed(jobs.SYNC_AGENT_SCHEDULES), redis.pipeline() as pipe:
        job_ids = _fan_out(
            redis, pipe, list(sets), jobs.SYNC_AGENT_SCHEDULES, bodies, f"agent schedules version {version}"
        )
        pipe.execute()
    return job_ids


def sealed_for(node_id: str, payload: dict[str, Any], context: str) -> dict[str, Any]:
    """``payload`` with its plain ``secret_env`` replaced by its sealed form for ``node_id`` (shared.secret_env),
    or left out when there is none: Redis and the agent's records only ever hold the sealed form."""
    secret = payload.get("secret_env") or {}
    body = {key: value for key, value in payload.items() if key != "secret_env"}
    if secret:
        body["secret_env"] = secret_env.seal(job_keys.node_key(node_id), context, secret)
    return body


def _sealed_component(node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    # Bound to the component's generation: the agent opens it with the same words (components.manager).
    context = secret_env.component_context(payload["business_id"], payload["component_id"], payload["generation"])
    return sealed_for(node_id, payload, context)


def _sealed_instance(node_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    # Bound to the app and the instance: the agent opens it with the same words (app_instances.instance).
    return sealed_for(node_id, payload, secret_env.instance_context(payload["app"], payload["instance_id"]))


def component_jobs(
    redis: Redis, deploys: Iterable[tuple[str, dict[str, Any]]], stops: Iterable[tuple[str, dict[str, Any]]]
) -> int:
    """Enqueue STOP_COMPONENT then DEPLOY_COMPONENT jobs, each (node id, payload), in one pipeline; returns
    how many. Stops go first so a component moved off a node frees it before anything new lands there."""
    bodies = [(node_id, jobs.STOP_COMPONENT, dump(StopComponentSchema, p)) for node_id, p in stops]
    bodies += [
        (node_id, jobs.DEPLOY_COMPONENT, dump(ComponentSpecSchema, _sealed_component(node_id, p)))
        for node_id, p in deploys
    ]
    if not bodies:
        return 0
    with _timed("component_jobs"), redis.pipeline() as pipe:
        for node_id, function, body in bodies:
            verb = "deploy" if function == jobs.DEPLOY_COMPONENT else "stop"
            description = f"{verb} component {body['component_id']} gen {body['generation']} of {body['business_id']}"
            _enqueue(redis, node_id, function, body, description, pipe)
        pipe.execute()
    for node_id, function, body in bodies:
        logger.info(
            "business %s component %s gen %s: %s sent to node %s",
            body["business_id"],
            body["component_id"],
            body["generation"],
            "deploy" if function == jobs.DEPLOY_COMPONENT else "stop",
            node_id,
        )
    return len(bodies)


def instance_jobs(
    redis: Redis, runs: Iterable[tuple[str, dict[str, Any]]], stops: Iterable[tuple[str, dict[str, Any]]]
) -> int:
    """Enqueue STOP_INSTANCE then RUN_INSTANCE jobs of apps, each (node id, payload), in one pipeline; returns
    how many. Stops go first so an instance moved off a node frees its ports and reservation first."""
    bodies = [(node_id, jobs.STOP_INSTANCE, dump(StopInstanceSchema, p)) for node_id, p in stops]
    bodies += [
        (node_id, jobs.RUN_INSTANCE, dump(InstanceSpecSchema, _sealed_instance(node_id, p))) for node_id, p in runs
    ]
    if not bodies:
        return 0
    with _timed("instance_jobs"), redis.pipeline() as pipe:
        for node_id, function, body in bodies:
            verb = "run" if function == jobs.RUN_INSTANCE else "stop"
            _enqueue(
                redis, node_id, function, body, f"{verb} instance {body['instance_id']} of app {body['app']}", pipe
            )
        pipe.execute()
    for node_id, function, body in bodies:
        logger.info(
            "app %s instance %s: %s sent to node %s",
            body["app"],
            body["instance_id"],
            "run" if function == jobs.RUN_INSTANCE else "stop",
            node_id,
        )
    return len(bodies)
