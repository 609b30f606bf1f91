"""DELETE /api/nodes/{id}: forget a node that is gone for good, keeping the history that names it.

What still references the node when it is forgotten:

- deployment tasks not ended there (PENDING, RUNNING, STOPPING) end LOST with the error "node forgotten",
  and their deployments are recomputed (a STOPPING one is then STOPPED, and can be deleted);
- fleet task hosts still pending or running there end failed "node forgotten";
- business components not ended there, or failed only because the node went offline (the manager's
  guess, which a report from the node could undo), fail "node <hostname> forgotten", which no report
  undoes; a component an update dropped goes; their businesses are recomputed (a failed rollout rolls
  back on the other nodes);
- its Redis user goes, and the connections it holds are dropped (redis_users.remove): its agent can no
  longer read or write anything until it joins again;
- its Redis state goes: every key of its own (heartbeat, summary, reports, output), and every job of its
  queue. Then the emptied queue gets a stop for each task and component that may still run there, so an
  agent that comes back under this id stops what the manager no longer follows before it does anything
  else (as a Nomad client that registers again after a purge is told to stop its allocations);
- the row stays, forgotten (node_presence), its secret and API labels cleared: node lists, fleet task
  targets and placement leave it out, while task, component and host history keep showing its hostname.
  Its agent joining again brings it back as that node, as a node joining for the first time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job

from manager_api import db
from manager_api.config import Settings
from manager_api.models import Business, BusinessComponent, DeploymentTask, Node, TaskHost, utcnow
from manager_api.services import audit, dispatch
from manager_api.services.businesses import actions as businesses
from manager_api.services.businesses.state import (
    ENDED,
    REMOVED,
    Jobs,
    failed_by_manager,
    grace_of,
    recompute,
    record_transition,
    stop_payload,
)
from manager_api.services.deployments import actions as deployments
from manager_api.services.deployments.state import LIVE_STATES
from manager_api.services.errors import Conflict, NotFound
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.nodes import labels as node_labels
from manager_api.services.nodes import liveness, redis_users, snapshot
from manager_api.services.nodes.inventory import NOT_FOUND
from manager_api.services.nodes.presence import known
from shared import keys
from shared.states import ComponentState, HostRunStatus, TaskState

logger = logging.getLogger(__name__)

FORGOTTEN = "node forgotten"
"""The error of a deployment task or fleet task host that was on a forgotten node."""


def forgotten_reason(hostname: str) -> str:
    """The error of a business component that was on a forgotten node (never taken for a late node's)."""
    return f"node {hostname} forgotten"


def _live_tasks_on(node_id: str) -> Any:
    """The condition of the deployment tasks on the node that have not ended (that may run there)."""
    return (DeploymentTask.node == node_id) & DeploymentTask.state.in_([s.value for s in LIVE_STATES])


def _may_run_there(row: BusinessComponent) -> bool:
    """Whether a component may still run on its node: not ended, or failed on the manager's guess alone."""
    return row.status not in ENDED or failed_by_manager(row.error_message)


def _stops(node_id: str, settings: Settings) -> tuple[dict[str, list[str]], Jobs]:
    """What may still run on the node: its live task ids by deployment, and a stop for each such component."""
    tasks: dict[str, list[str]] = defaultdict(list)
    query = DeploymentTask.select(DeploymentTask.id, DeploymentTask.deployment).where(_live_tasks_on(node_id))
    for task_id, deployment_id in query.tuples():
        tasks[deployment_id].append(task_id)
    jobs = Jobs()
    grace = settings.component_stop_grace_seconds
    rows = BusinessComponent.select(BusinessComponent, Business).join(Business).where(BusinessComponent.node == node_id)
    for row in rows:
        if _may_run_there(row):
            jobs.stops.append((node_id, stop_payload(row, grace_of(row.business, row.component_id, grace))))
    return tasks, jobs


def _reset_redis(redis: Redis, node_id: str, settings: Settings) -> int:
    """Cut off the node's Redis user, drop its own keys and every job of its queue, then queue the stops of
    what may still run there; returns how many stops. Done before the database changes: a Redis failure
    changes nothing."""
    if not settings.agent_redis_url:  # else the operator manages the agents' users
        redis_users.remove(redis, node_id)
    queue = dispatch.node_queue(redis, node_id)
    registries = (
        queue.started_job_registry,
        queue.finished_job_registry,
        queue.failed_job_registry,
        queue.deferred_job_registry,
        queue.scheduled_job_registry,
        queue.canceled_job_registry,
    )
    held = {job_id for registry in registries for job_id in registry.get_job_ids(cleanup=False)}
    queue.delete(delete_jobs=True)
    # Its keys (heartbeat, summary, reports, output of each task...) by their prefix: a forget is rare, and
    # a SCAN finds the output streams of tasks that no table remembers any more.
    own = list(redis.scan_iter(match=keys.node_prefix(node_id) + "*", count=1000))
    with redis.pipeline(transaction=False) as pipe:
        if own:
            pipe.delete(*own)
        pipe.delete(queue.intermediate_queue_key, *(registry.key for registry in registries))
        for job_id in held:
            pipe.delete(Job.key_for(job_id))
        pipe.execute()
    tasks, jobs = _stops(node_id, settings)
    for deployment_id, task_ids in tasks.items():
        dispatch.stop_tasks(redis, node_id, deployment_id, task_ids, settings.stop_grace_seconds)
    businesses.send(redis, jobs)
    return len(tasks) + len(jobs.stops)


def _lose_tasks(node_id: str) -> int:
    """Deployment tasks not ended on the node end LOST; returns how many (inside the write transaction)."""
    query = DeploymentTask.select(DeploymentTask.deployment).where(_live_tasks_on(node_id)).distinct()
    touched = {deployment_id for (deployment_id,) in query.tuples()}
    now = utcnow()
    lost = (
        DeploymentTask.update(state=TaskState.LOST.value, error=FORGOTTEN, ended_at=now, updated_at=now)
        .where(_live_tasks_on(node_id))
        .execute()
    )
    for deployment_id in sorted(touched):
        deployments.recompute(deployment_id)
    return int(lost)


def _fail_hosts(node_id: str) -> int:
    """Fleet task hosts still open on the node end failed; returns how many (inside the write transaction)."""
    open_on_node = (TaskHost.node == node_id) & TaskHost.status.in_(fleet_tasks.OPEN_HOST_STATUSES)
    touched = {task_pk for (task_pk,) in TaskHost.select(TaskHost.task).where(open_on_node).distinct().tuples()}
    now = utcnow()
    failed = (
        TaskHost.update(status=HostRunStatus.FAILED.value, error_message=FORGOTTEN, finished_at=now, updated_at=now)
        .where(open_on_node)
        .execute()
    )
    for task_pk in sorted(touched):
        fleet_tasks.recompute(task_pk)
    return int(failed)


def _fail_components(node_id: str, hostname: str, actor: str, grace: float) -> tuple[int, Jobs]:
    """Components that may still run on the node fail for good (one an update dropped goes); returns how
    many, and the stops of the rollbacks this starts elsewhere (inside the write transaction)."""
    reason = forgotten_reason(hostname)
    touched: set[str] = set()
    failed = 0
    now = utcnow()
    for row in BusinessComponent.select().where(BusinessComponent.node == node_id):
        if not _may_run_there(row):
            continue
        failed += 1
        if row.desired == REMOVED:
            BusinessComponent.delete().where(BusinessComponent.id == row.id).execute()
            record_transition(row, REMOVED, reason, actor)
        else:
            BusinessComponent.update(status=ComponentState.FAILED.value, error_message=reason, updated_at=now).where(
                BusinessComponent.id == row.id
            ).execute()
            record_transition(row, ComponentState.FAILED.value, reason, actor)
        touched.add(row.business_id)
    jobs = Jobs()
    for business_id in sorted(touched):
        jobs.extend(recompute(business_id, actor, grace))
    return failed, jobs


def forget(redis: Redis, node_id: str, actor: str, settings: Settings) -> dict[str, Any]:
    """Forget an offline node (404 unknown or already forgotten, 409 while it is online)."""
    node = Node.select(Node.hostname, Node.ip, Node.facts).where(Node.id == node_id, known()).first()
    if node is None:
        raise NotFound(NOT_FOUND)
    if snapshot.read(redis, [node_id], settings.offline_after_intervals).is_online(node_id):
        raise Conflict(f"node {node_id} ({node.hostname}) is online: stop its agent first")
    stops = _reset_redis(redis, node_id, settings)
    grace = settings.component_stop_grace_seconds
    with db.write_transaction():
        if not Node.select().where(Node.id == node_id, known()).exists():
            raise NotFound(NOT_FOUND)  # forgotten by a concurrent request meanwhile
        lost = _lose_tasks(node_id)
        hosts = _fail_hosts(node_id)
        components, rollback = _fail_components(node_id, node.hostname, actor, grace)
        agent_labels = node_labels.agent_labels_of(node_id, node.facts)
        Node.update(
            forgotten_at=utcnow(),
            secret_digest=None,
            status=liveness.stored_status(online=False),
            api_labels=node_labels.dumps({}),
            labels=node_labels.dumps(agent_labels),
        ).where(Node.id == node_id).execute()
        detail = {
            "hostname": node.hostname,
            "ip": node.ip,
            "tasks_lost": lost,
            "hosts_failed": hosts,
            "components_failed": components,
            "stops_queued": stops,
        }
        audit.record(actor, "node.forgotten", node_id, detail)
    logger.warning(
        "node %s (%s) forgotten by %s: %d tasks lost, %d fleet task hosts and %d components failed, %d stops queued",
        node_id,
        node.hostname,
        actor,
        lost,
        hosts,
        components,
        stops,
    )
    try:
        businesses.send(redis, rollback)
    except RedisError as exc:
        # The duties send unanswered stops again (business_upkeep.Resender): the forget itself is done.
        logger.error("node %s forgotten, but the rollback stops of its businesses were not sent: %s", node_id, exc)
    return {"id": node_id, "hostname": node.hostname, "status": "success", "message": "forgotten"}
