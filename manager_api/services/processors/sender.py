"""The processors' sender: a thread of the duties that fills the outbox and POSTs its due rows, signed.

As the alerts' sender does (services.alerts.delivery), with services.webhooks: a row not answered 2xx is tried
again after 1, 2, 4 ... seconds for ``max_attempts`` in all, then given up; every attempt sends the same body
and delivery id (at least once: a crash between a 2xx and its commit sends it again). A task's summary waits
until each of its hosts' results was sent or given up, so a receiver sees the results before the summary. The
signature is made with the task's own processor secret; a URL's path and the secret are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.models import FleetTask, ProcessorDelivery, utcnow
from manager_api.services import audit
from manager_api.services.processors import outbox
from manager_api.services.processors.sealed import Processor, unseal
from manager_api.services.webhooks import OutboxThread, backoff, headers, post, shown
from shared import keys

logger = logging.getLogger(__name__)

ACTOR = "duties"
POLL_SECONDS = 0.25
"""How often the sender fills the outbox and looks for due rows: a result reaches its processor this soon."""
BATCH = 50
"""Rows taken per look."""


class Sender(OutboxThread):
    """Fills the outbox and delivers due rows every POLL_SECONDS while ``may_send()`` (the duties' lock is held)."""

    name = "corral-processors"
    poll_seconds = POLL_SECONDS

    def __init__(
        self, max_attempts: int, may_send: Callable[[], bool] = lambda: True, redis: Redis | None = None
    ) -> None:
        super().__init__(may_send)
        self.max_attempts = max(1, max_attempts)
        self.redis = redis  # the ?wait callers of a task are woken on it as its summary is settled

    def work(self) -> None:
        self.pass_once()

    def pass_once(self) -> int:
        """Fill the outbox, then one attempt at every due row (BATCH at a time); returns the attempts made."""
        outbox.fill()
        tried = 0
        while not self.stopping():
            count = self.deliver_due()
            tried += count
            if count < BATCH:
                break
        return tried

    def deliver_due(self) -> int:
        """One attempt at every due row (at most BATCH); returns how many were tried."""
        due = list(
            ProcessorDelivery.select()
            .where((ProcessorDelivery.state == "pending") & (ProcessorDelivery.next_at <= utcnow()))
            .order_by(ProcessorDelivery.id)
            .limit(BATCH)
        )
        processors: dict[int, Processor | None] = {}
        task_ids: dict[int, str] = {}
        for row in due:
            if row.task_id not in processors:
                task = FleetTask.select(FleetTask.task_id, FleetTask.processor).where(FleetTask.id == row.task_id).get()
                processors[row.task_id] = unseal(task.processor)
                task_ids[row.task_id] = task.task_id
            processor = processors[row.task_id]
            if processor is None:
                continue
            if row.event == outbox.SUMMARY_EVENT and _hosts_pending(row.task_id):
                continue  # after the results
            self._attempt(row, processor, task_ids[row.task_id])
        return len(due)

    def _attempt(self, row: ProcessorDelivery, processor: Processor, task_id: str) -> None:
        body = row.body.encode()
        error = post(
            processor.url,
            body,
            headers(row.event, row.delivery_id, processor.secret.encode(), body, "corral-processor"),
        )
        attempt = row.attempts + 1
        state = "sent" if error is None else "given_up" if attempt >= self.max_attempts else "pending"
        now = utcnow()
        with db.write_transaction():
            ProcessorDelivery.update(
                attempts=attempt,
                state=state,
                next_at=now + timedelta(seconds=backoff(attempt)),
                last_error=error or "",
                sent_at=now if state == "sent" else None,
            ).where(ProcessorDelivery.id == row.id).execute()
            if state == "given_up" or (row.event == outbox.SUMMARY_EVENT and state == "sent"):
                audit.record(
                    ACTOR,
                    f"processor.{state}",
                    task_id,
                    {"event": row.event, "url": shown(processor.url), "attempt": attempt, "error": error or ""},
                )
        if row.event == outbox.SUMMARY_EVENT and state != "pending" and self.redis is not None:
            try:
                self.redis.publish(keys.task_changed_channel(task_id), "1")
            except RedisError:
                pass  # the waiters read the database again within WAIT_POLL_SECONDS anyway
        where = f"fleet task {task_id}: processor {row.event} {row.delivery_id} to {shown(processor.url)}"
        if state == "sent":
            logger.info("%s sent, attempt %d", where, attempt)
        elif state == "given_up":
            logger.error("%s given up after %d attempts: %s", where, attempt, error)
        else:
            logger.warning("%s attempt %d failed, again in %.0f s: %s", where, attempt, backoff(attempt), error)


def _hosts_pending(task_pk: int) -> bool:
    return bool(
        ProcessorDelivery.select(ProcessorDelivery.id)
        .where(
            ProcessorDelivery.task == task_pk,
            ProcessorDelivery.state == "pending",
            ProcessorDelivery.event == outbox.HOST_EVENT,
        )
        .exists()
    )
