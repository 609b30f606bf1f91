"""Sending work to agents: RQ jobs by name, JSON-serialized, on each node's own queue."""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from shared import defaults, jobs, keys
from shared.messages import StartTaskSchema, StopTasksSchema, dump

logger = logging.getLogger(__name__)


def node_queue(redis: Redis, node_id: str) -> Queue:
    """The RQ queue that only ``node_id``'s agent consumes."""
    return Queue(keys.node_queue(node_id), connection=redis, serializer=JSONSerializer)


def start_task(redis: Redis, node_id: str, payload: dict[str, Any]) -> str:
    """Enqueue jobs.START_TASK for one task; returns the job id."""
    body = dump(StartTaskSchema, payload)
    job = node_queue(redis, node_id).enqueue(
        jobs.START_TASK,
        args=(body,),
        description=f"start task {body['task_id']} of deployment {body['deployment_id']}",
        result_ttl=defaults.JOB_RESULT_TTL,
        failure_ttl=defaults.JOB_FAILURE_TTL,
    )
    logger.info(
        "task %s of deployment %s sent to node %s (job %s)",
        body["task_id"],
        body["deployment_id"],
        node_id,
        job.id,
    )
    return str(job.id)


def stop_tasks(redis: Redis, node_id: str, task_ids: list[str], grace_seconds: float) -> str:
    """Enqueue jobs.STOP_TASKS for some tasks of one node; returns the job id."""
    body = dump(StopTasksSchema, {"task_ids": task_ids, "grace_seconds": grace_seconds})
    job = node_queue(redis, node_id).enqueue(
        jobs.STOP_TASKS,
        args=(body,),
        description=f"stop {len(task_ids)} tasks",
        result_ttl=defaults.JOB_RESULT_TTL,
        failure_ttl=defaults.JOB_FAILURE_TTL,
    )
    logger.info("stop of tasks %s sent to node %s (job %s)", ",".join(task_ids), node_id, job.id)
    return str(job.id)
