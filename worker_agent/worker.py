"""The RQ worker of an agent: one node queue, JSON payloads, only the allowed job functions, and only jobs
the manager signed for this node."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus

from shared import job_signing, keys
from shared.jobs import ALLOWED

logger = logging.getLogger(__name__)


RQ_PER_JOB_FUNCTIONS = frozenset(
    {"dequeue_job_and_maintain_ttl", "handle_job_success", "_finalize_success", "perform_job", "execute_job"}
)
"""RQ's worker methods whose INFO lines are about one job (taken, done, its result kept)."""


class RqPerJobLines(logging.Filter):
    """Drops RQ's INFO lines about each job unless the agent logs at DEBUG: the job functions log the same
    events with the node and task ids, and on the path of every job two more lines cost about as much as running
    the job function (a real-time `echo hi`). The worker's own events (started, listening, lost Redis) stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.funcName not in RQ_PER_JOB_FUNCTIONS:
            return True
        return logging.getLogger().isEnabledFor(logging.DEBUG)


_rq_per_job_lines = RqPerJobLines()

HEARTBEAT_SKIP_SECONDS = 1.0
"""A heartbeat RQ sends alone this soon after the last one that went through is skipped (see AgentWorker.heartbeat)."""

SUSPENSION_CHECK_SECONDS = 1.0
"""How often at most the worker reads RQ's suspension flag (`rq suspend`) before taking a job."""


class ForbiddenJobError(Exception):
    """A job named a function that agents do not run."""


class CredentialsRefused(RedisError):
    """Redis refused this node's user (its password changed, or the node was forgotten and its user removed).

    Not a ConnectionError, which RQ's work loop retries for ever with the same URL: this one ends the worker,
    and the agent joins again for a URL that works (worker_agent.agent).
    """


class AllowlistedJob(Job):
    """A Job that resolves its function only if shared.jobs.ALLOWED names it and, given a ``job_key``, only
    if the manager signed it for this node (shared.job_signing); it never imports callbacks.

    RQ alone would ``import_attribute`` whatever a job names (``os.system``...): the checks happen before
    anything is imported, inside ``perform()``, so RQ records a refusal as the job's failure.
    """

    job_key: bytes | None = None
    """This node's job signing key (from the join answer); None only for an agent run on a bare Redis."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if name not in ALLOWED or self.instance is not None:
            allowed = ", ".join(sorted(ALLOWED))
            raise ForbiddenJobError(f"job function {name!r} is not allowed on agents (allowed: {allowed})")
        if self.job_key is not None and not job_signing.verify(
            self.job_key, self.meta.get(job_signing.META_FIELD), name, self.args, self.kwargs, self.id, self.origin
        ):
            raise ForbiddenJobError(
                f"job {self.id} ({name}) is not signed by the manager for this node: refused "
                "(put on this queue by someone else, or altered)"
            )
        return super().func

    # Callbacks are imported by name too; corral never sets them, so a job carrying one gets none.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None


class AgentWorker(SimpleWorker):
    """Runs jobs in the main thread (no fork), refuses any job function not in the allowlist."""

    job_class = AllowlistedJob

    def __init__(
        self,
        node_id: str,
        connection: Redis,
        name: str | None = None,
        job_key: bytes | None = None,
        reconnect_max_seconds: float | None = None,
        taking_jobs: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        if job_key is not None:
            # A class of this worker's own: RQ makes jobs from the class, and only this node's key may sign them.
            kwargs.setdefault("job_class", type("SignedJob", (AllowlistedJob,), {"job_key": job_key}))
        # Unique per process, so a restarted agent never clashes with the worker key of a dead predecessor.
        super().__init__(
            [keys.node_queue(node_id)],
            name=name or f"{node_id}.{os.getpid()}",
            connection=connection,
            **kwargs,
        )
        self.node_id = node_id
        self.log.addFilter(_rq_per_job_lines)  # once: a logger keeps one of each filter
        self.shutdown_requested = False
        self.taking_jobs = taking_jobs
        """False from a failed turn of the dequeue loop (Redis lost) until one succeeds: the node is not ready.
        A worker started after one that lost Redis starts False, and says when it takes jobs again."""
        self.on_taking_changed: Callable[[bool], object] = lambda taking: None
        self.on_stop_requested: Callable[[], object] = lambda: None
        """Called as a stop is requested by signal (the agent arms its slow-stop stack dump)."""
        self._beat_at: float | None = None  # monotonic time of the last heartbeat sent alone that went through
        self._state_written: str | None = None  # the state this worker last wrote alone (None: unknown)
        self._suspension_checked_at: float | None = None  # monotonic
        self._held: Pipeline | None = None  # prepare_execution's transaction, sent with prepare_job_execution's
        if reconnect_max_seconds is not None:
            # RQ waits 1, 2, 4 ... 60 s between attempts to reach a lost Redis, while the agent's heartbeat
            # tries every interval: the node would read online for up to a minute with nobody taking its jobs.
            self.max_connection_wait_time = reconnect_max_seconds

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat, its three writes in one round trip when RQ gives no pipeline, and none when one went
        through less than HEARTBEAT_SKIP_SECONDS ago; CredentialsRefused when Redis no longer knows this node's user.

        RQ writes them one by one, and asks for one three times around every job (after the dequeue, after the
        job, before the next dequeue) besides the two it queues on transactions of its own: a fleet command's
        start waited for one, and each cost the agent a round trip and RQ's date formatting. The worker key
        lives worker_ttl + 60 s (480 s) and RQ blocks at most worker_ttl - 15 s on the queue, so one heartbeat
        a second is plenty. The skip delays noticing a lost Redis by HEARTBEAT_SKIP_SECONDS at most: RQ's loop
        heartbeats before every attempt to reach it again (1 s apart at the least), and a failed heartbeat is
        never skipped after.
        """
        idle_ttl = self.worker_ttl + 60  # RQ's own when it gives no timeout
        if pipeline is not None:
            # RQ queues one on each job's first transaction with the job's TTL (its timeout + 60 s), shorter than
            # the idle worker's: the key would then outlive a skipped heartbeat by less than RQ's blocking dequeue.
            super().heartbeat(max(timeout or 0, idle_ttl), pipeline=pipeline)
            return
        recent = self._beat_at is not None and time.monotonic() - self._beat_at < HEARTBEAT_SKIP_SECONDS
        if recent and (timeout is None or timeout <= idle_ttl):
            return
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                super().heartbeat(timeout, pipeline=pipe)
                pipe.execute()
        except AuthenticationError as exc:
            self._beat_at = None
            # RQ heartbeats first thing in every turn of its dequeue loop, reconnections included.
            raise CredentialsRefused(f"Redis refused this node's credentials: {exc}") from exc
        except (RedisConnectionError, RedisTimeoutError):
            self._beat_at = None
            # RQ heartbeats first thing in every turn of its dequeue loop: failing here, it waits to reconnect.
            self._taking(False)
            raise
        if timeout is None or timeout >= idle_ttl:
            self._beat_at = time.monotonic()  # the key lives at least idle_ttl from now
        self._taking(True)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, without a round trip when this worker last wrote the same state: RQ writes ``idle`` twice
        between two jobs (after the job, before the dequeue)."""
        if pipeline is None and state == self._state_written:
            self._state = state
            return
        super().set_state(state, pipeline)
        # Written when sent alone (it raised otherwise); on a pipeline, known only once that runs.
        self._state_written = state if pipeline is None else None

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check of its suspension flag (a round trip before every dequeue), at most every
        SUSPENSION_CHECK_SECONDS: corral never suspends workers, and a worker blocked on its queue notices a
        suspension only after the next job anyway."""
        at = time.monotonic()
        if self._suspension_checked_at is not None and at - self._suspension_checked_at < SUSPENSION_CHECK_SECONDS:
            return
        super().check_for_suspension(burst)
        self._suspension_checked_at = time.monotonic()

    def prepare_execution(self, job: Job) -> Execution:
        """RQ's (rq.executions.prepare_execution), its transaction held to be sent with the job's own
        (prepare_job_execution), which RQ runs next with nothing read in between: one round trip fewer between
        taking a job and starting its command, on the path of every real-time call."""
        pipeline = self.connection.pipeline()
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipeline, worker_name=self.name)
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
        self._held = pipeline
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's, in the transaction prepare_execution held (RQ's own when none is held)."""
        held, self._held = self._held, None
        if held is None:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        with held as pipeline:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            if remove_from_intermediate_queue:
                pipeline.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipeline.execute()

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ's, without its round trip for a job that returned: its ``last_heartbeat``, written alone by RQ,
        goes with the rest of the job in the success transaction (Job.save). A failed job keeps RQ's write (the
        failure transaction saves no job fields)."""
        if job.get_status(refresh=False) != JobStatus.STARTED:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    def _taking(self, taking: bool, cause: str = "lost Redis") -> None:
        if taking != self.taking_jobs:
            self.taking_jobs = taking
            what = "takes jobs again" if taking else f"{cause}, not taking jobs"
            logger.info("node %s: worker %s %s", self.node_id, self.name, what)
            self.on_taking_changed(taking)

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance, which it runs outside its reconnect loop too (as the worker starts, and between
        jobs): a Redis lost right then ended the worker with "found an unhandled exception". Here it is a lost
        Redis like any other: the dequeue loop that follows waits for Redis and runs the maintenance again."""
        try:
            super().run_maintenance_tasks()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            logger.warning("node %s: worker %s: Redis lost during maintenance: %s", self.node_id, self.name, exc)
            self._taking(False)

    def stopped(self, cause: str) -> None:
        """The work loop ended without a stop request (``cause``): the node takes no jobs until a worker does."""
        self._taking(False, cause)

    def clean_group_registries(self) -> None:
        """Nothing: corral makes no RQ job groups, and the lock RQ takes for them (a key shared by every queue's
        workers) is beyond this node's Redis user, which reaches only its own node's keys."""

    def handle_warm_shutdown_request(self) -> None:
        self.shutdown_requested = True
        self.on_stop_requested()
        logger.info("node %s: worker %s: shutdown requested", self.node_id, self.name)


def requeue_orphaned_jobs(connection: Redis, node_id: str) -> list[str]:
    """Put back on the node queue the jobs a dead predecessor left started; returns their ids.

    Run before this agent's worker starts, so every started job on the node queue is an orphan; the
    job functions are idempotent, so running one again is safe.
    """
    queue_name = keys.node_queue(node_id)
    registry = StartedJobRegistry(queue_name, connection, job_class=AllowlistedJob, serializer=JSONSerializer)
    requeued = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        job = AllowlistedJob.fetch_many([job_id], connection=connection, serializer=JSONSerializer)[0]
        connection.zrem(registry.key, f"{job_id}:{execution_id}")
        if job is None:
            continue  # expired meanwhile: nothing to run again
        # Not Queue.enqueue_job, which also adds the queue to RQ's index of queues (rq:queues): a key of
        # every node, which this node's Redis user may not write (manager_api.services.nodes.redis_users).
        with connection.pipeline() as pipe:
            job.set_status(JobStatus.QUEUED, pipeline=pipe)
            registry.get_queue().push_job_id(job_id, pipeline=pipe, at_front=True)
            pipe.execute()
        requeued.append(job_id)
        logger.warning("node %s: requeued job %s left started by worker %s", node_id, job_id, job.worker_name)
    return requeued
