"""The agent's RQ worker: only allowlisted job functions run; orphaned jobs of a dead worker are requeued."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Callback
from rq.job import JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend
from rq.worker import WorkerStatus

from manager_api.services.nodes import redis_users
from shared import job_signing, keys
from shared import jobs as job_names
from tests.support import RedisServer, pid_alive, wait_until
from tests.worker_agent.conftest import node_queue, run_jobs, start_payload, task_events
from worker_agent.deployment_tasks.supervisor import Supervisor
from worker_agent.worker import HEARTBEAT_SKIP_SECONDS, AgentWorker, AllowlistedJob, requeue_orphaned_jobs


def test_a_job_outside_the_allowlist_fails_without_running(
    redis_client: redis_lib.Redis, node_id: str, tmp_path: Path, supervisor: Supervisor
) -> None:
    marker = tmp_path / "pwned"
    queue = node_queue(redis_client, node_id)
    evil = queue.enqueue("os.system", f"touch {marker}")
    allowed = queue.enqueue(job_names.START_TASK, start_payload("t-allowed", "true"))

    run_jobs(redis_client, node_id)

    assert evil.get_status() == JobStatus.FAILED
    result = evil.latest_result()
    assert result is not None and "'os.system' is not allowed" in (result.exc_string or "")
    assert not marker.exists()
    assert allowed.get_status() == JobStatus.FINISHED
    assert allowed.return_value()["started"] is True


def test_with_a_job_key_only_jobs_the_manager_signed_for_this_node_run(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    """Another node could push jobs onto this queue: unsigned, foreign-signed and altered ones are refused."""
    master = b"m" * 32
    mine, other = job_signing.node_key(master, node_id), job_signing.node_key(master, "another-node")
    queue = node_queue(redis_client, node_id)

    def signed(key: bytes, task_id: str, tamper: bool = False) -> object:
        payload = start_payload(task_id, "true")
        job_id = f"job-{task_id}"
        signature = job_signing.sign(key, job_names.START_TASK, [payload], {}, job_id, queue.name)
        if tamper:
            payload = start_payload(task_id, "echo tampered")
        return queue.enqueue(job_names.START_TASK, payload, job_id=job_id, meta={job_signing.META_FIELD: signature})

    good = signed(mine, "t-good")
    unsigned = queue.enqueue(job_names.START_TASK, start_payload("t-unsigned", "true"))
    foreign = signed(other, "t-foreign")
    altered = signed(mine, "t-altered", tamper=True)

    run_jobs(redis_client, node_id, job_key=mine)

    assert good.get_status() == JobStatus.FINISHED and good.return_value()["started"] is True
    for refused in (unsigned, foreign, altered):
        assert refused.get_status() == JobStatus.FAILED
        result = refused.latest_result()
        assert result is not None and "not signed by the manager for this node" in (result.exc_string or "")
    assert {e["task_id"] for e in task_events(redis_client)} <= {"t-good"}  # nothing of the refused ones ran


def test_a_job_with_a_callback_never_imports_it(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    queue = node_queue(redis_client, node_id)
    # An allowed job that fails (bad payload) and names an arbitrary function as failure callback:
    # were it imported and called, os.abort would end this test process.
    job = queue.enqueue(job_names.START_TASK, {"nonsense": True}, on_failure=Callback("os.abort"))

    run_jobs(redis_client, node_id)

    assert job.get_status() == JobStatus.FAILED
    result = job.latest_result()
    assert result is not None and "ValidationError" in (result.exc_string or "")


def test_worker_names_are_unique_per_process(redis_client: redis_lib.Redis, node_id: str) -> None:
    import os

    worker = AgentWorker(node_id, connection=redis_client)

    assert worker.name == f"{node_id}.{os.getpid()}"
    assert worker.queue_names() == [keys.node_queue(node_id)]


def test_jobs_left_started_by_a_dead_worker_are_requeued_and_run_once(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.START_TASK, start_payload("t-orphan", "sleep 30"), job_id=keys.node_job_id(node_id, "o"))
    # A predecessor dequeues the job, marks it started, and dies before running it.
    dead = AgentWorker(node_id, connection=redis_client, name=f"{node_id}.999999")
    dead.register_birth()
    job, _queue = queue.dequeue_any(
        [queue], None, connection=redis_client, job_class=AllowlistedJob, serializer=JSONSerializer
    )
    dead.prepare_execution(job)
    dead.prepare_job_execution(job, remove_from_intermediate_queue=True)
    registry = StartedJobRegistry(queue.name, redis_client)
    assert job.id in registry.get_job_ids(cleanup=False)
    assert queue.count == 0

    # Requeued through the node's own Redis user, as the agent does: it may touch only its node's keys.
    user, password = f"corral-node-{node_id}", "pw"
    redis_client.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *redis_users.rules(node_id))
    kwargs = redis_client.connection_pool.connection_kwargs
    as_node = redis_lib.Redis(host=kwargs["host"], port=kwargs["port"], username=user, password=password)
    assert requeue_orphaned_jobs(as_node, node_id) == [job.id]
    as_node.close()
    assert registry.get_job_ids(cleanup=False) == []
    assert queue.job_ids == [job.id] and job.get_status(refresh=True) == JobStatus.QUEUED

    run_jobs(redis_client, node_id)
    rec = wait_until(lambda: supervisor.record("t-orphan"), what="orphaned start ran")
    assert rec.pid is not None and pid_alive(rec.pid)
    # Requeued again (as after a second crash): the handler is idempotent, the task is not started twice.
    queue.enqueue(job_names.START_TASK, start_payload("t-orphan", "sleep 30"))
    run_jobs(redis_client, node_id)
    assert [e["state"] for e in task_events(redis_client, "t-orphan")] == ["RUNNING"]
    assert supervisor.record("t-orphan").pid == rec.pid


def test_a_heartbeat_outside_a_job_renews_the_worker_key(redis_client: redis_lib.Redis, node_id: str) -> None:
    worker = AgentWorker(node_id, connection=redis_client)
    worker.register_birth()
    redis_client.expire(worker.key, 5)

    worker.heartbeat(300)  # sent as one pipeline, not RQ's three separate writes

    assert 250 < redis_client.ttl(worker.key) <= 300
    assert redis_client.hget(worker.key, "last_heartbeat")
    worker.register_death()


def test_the_worker_tries_a_lost_redis_again_as_often_as_the_heartbeat(redis_client: redis_lib.Redis) -> None:
    """RQ's own back-off grows to 60 s while the node's heartbeat, back after a second, reads online."""
    worker = AgentWorker("n" * 32, connection=redis_client, reconnect_max_seconds=0.5)
    assert worker.max_connection_wait_time == 0.5
    assert AgentWorker("n" * 32, connection=redis_client).max_connection_wait_time == 60.0  # RQ's, unchanged


def test_a_heartbeat_sent_alone_right_after_one_that_went_through_is_skipped(
    redis_client: redis_lib.Redis, node_id: str
) -> None:
    """RQ asks for three around every job; one a second keeps the worker key (480 s) alive."""
    worker = AgentWorker(node_id, connection=redis_client)
    worker.register_birth()
    worker.heartbeat()
    redis_client.hset(worker.key, "last_heartbeat", "marker")

    worker.heartbeat()  # within HEARTBEAT_SKIP_SECONDS: no round trip
    assert redis_client.hget(worker.key, "last_heartbeat") == b"marker"

    def beaten() -> bool:
        worker.heartbeat()
        return redis_client.hget(worker.key, "last_heartbeat") != b"marker"

    wait_until(beaten, timeout=HEARTBEAT_SKIP_SECONDS + 5, interval=0.05, what="the next heartbeat to go")
    # One RQ queues on a job's transaction with the job's shorter TTL never shortens the key's life below the
    # idle worker's, which the skipped heartbeats would have renewed.
    with redis_client.pipeline() as pipe:
        worker.heartbeat(100, pipeline=pipe)
        pipe.execute()
    assert redis_client.ttl(worker.key) > worker.worker_ttl
    worker.register_death()


def test_a_failed_heartbeat_is_never_skipped_after(node_id: str) -> None:
    server = RedisServer().start()
    client = redis_lib.Redis.from_url(server.url, retry=Retry(NoBackoff(), 0))
    try:
        worker = AgentWorker(node_id, connection=client)
        worker.register_birth()
        worker.heartbeat()
        server.stop()
        worker._beat_at = None  # as after HEARTBEAT_SKIP_SECONDS: RQ's first attempt to reconnect comes 1 s later
        with pytest.raises(redis_lib.ConnectionError):
            worker.heartbeat()
        assert not worker.taking_jobs
        again = RedisServer()  # back on the same port, empty
        again.port = server.port
        again.start()
        try:
            worker.heartbeat()  # right after the failure, yet sent: the worker takes jobs again at once
            assert worker.taking_jobs and client.hget(worker.key, "last_heartbeat")
        finally:
            again.stop()
    finally:
        client.close()
        server.stop()


def test_the_worker_state_is_written_once_per_change(redis_client: redis_lib.Redis, node_id: str) -> None:
    worker = AgentWorker(node_id, connection=redis_client)
    worker.register_birth()
    worker.set_state(WorkerStatus.IDLE)
    redis_client.hset(worker.key, "state", "marker")

    worker.set_state(WorkerStatus.IDLE)  # RQ's second "idle" between two jobs: no round trip
    assert redis_client.hget(worker.key, "state") == b"marker"
    worker.set_state(WorkerStatus.BUSY)
    assert redis_client.hget(worker.key, "state") == b"busy" and worker.get_state() == WorkerStatus.BUSY
    worker.register_death()


def test_a_burst_of_jobs_reads_the_suspension_flag_once_and_keeps_each_jobs_record(
    redis_client: redis_lib.Redis, node_id: str, supervisor: Supervisor
) -> None:
    queue = node_queue(redis_client, node_id)
    jobs = [queue.enqueue(job_names.START_TASK, start_payload(f"t-burst-{i}", "true")) for i in range(20)]
    redis_client.config_resetstat()  # the test's own Redis server

    run_jobs(redis_client, node_id)

    # RQ's registration of the worker reads a key or two too; before, the flag was read before every job (21+).
    assert int(redis_client.info("commandstats").get("cmdstat_exists", {}).get("calls", 0)) <= 4
    for job in jobs:
        job.refresh()
        assert job.get_status() == JobStatus.FINISHED and job.return_value()["started"] is True
        # Its end and last heartbeat, no longer written apart, are saved with the job.
        assert job.ended_at is not None and job.last_heartbeat is not None and job.started_at is not None
        assert job.started_at <= job.last_heartbeat


def test_a_suspended_worker_still_takes_no_job(redis_client: redis_lib.Redis, node_id: str) -> None:
    queue = node_queue(redis_client, node_id)
    job = queue.enqueue(job_names.START_TASK, start_payload("t-suspended", "true"))
    suspend(redis_client)
    try:
        run_jobs(redis_client, node_id)  # burst mode: a suspended worker stops
    finally:
        resume(redis_client)
    assert job.get_status() == JobStatus.QUEUED and queue.job_ids == [job.id]


def test_taking_a_job_writes_its_bookkeeping_in_one_transaction(redis_client: redis_lib.Redis, node_id: str) -> None:
    """RQ sends two transactions between the dequeue and the job (its execution, then the job's start); the agent
    sends them as one (a round trip fewer before a command starts), with everything RQ writes."""
    queue = node_queue(redis_client, node_id)
    queue.enqueue(job_names.START_TASK, start_payload("t-one-txn", "true"), job_id=keys.node_job_id(node_id, "1"))
    worker = AgentWorker(node_id, connection=redis_client)
    worker.register_birth()
    job, _queue = queue.dequeue_any(
        [queue], None, connection=redis_client, job_class=AllowlistedJob, serializer=JSONSerializer
    )

    def execs() -> int:
        return int(redis_client.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))

    before = execs()
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job, remove_from_intermediate_queue=True)
    assert execs() - before == 1

    assert job.get_status(refresh=True) == JobStatus.STARTED and job.worker_name == worker.name
    assert job.id in StartedJobRegistry(queue.name, redis_client).get_job_ids(cleanup=False)
    assert redis_client.exists(execution.key) == 1
    assert worker.get_state() == WorkerStatus.BUSY
    assert redis_client.lrange(queue.intermediate_queue_key, 0, -1) == []
    assert redis_client.ttl(job.key) == -1  # persisted while it runs, as RQ does
