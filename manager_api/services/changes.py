"""Wake-ups of the requests that wait for a fleet task or a workflow: one subscriber per process for all changes.

The duties publish on keys.task_changed_channel(task_id) after each commit that changed a task, the workflow
engine on keys.workflow_changed_channel(workflow_id) after each move of a workflow. A subscription of its own per
waiting request cost a connection, its AUTH and a SUBSCRIBE on every real-time call, on the path of its answer;
one thread per process subscribed to every such channel (two patterns) costs none of that, and hands each change
to the requests waiting on that channel. A change missed while Redis is away wakes every waiter (they read the
database again), and waiters read it now and then anyway (fleet_tasks.reads.wait, workflows.actions.wait).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from redis import ConnectionPool, Redis
from redis.exceptions import RedisError

from shared import keys

logger = logging.getLogger(__name__)

PATTERNS = (keys.task_changed_channel("*"), keys.workflow_changed_channel("*"))
"""Every fleet task's channel and every workflow's."""

RECONNECT_SECONDS = 1.0
"""Pause before the subscriber tries Redis again after losing it."""

IDLE_SECONDS = 60.0
"""With nobody waiting this long, the subscriber ends (the next wait starts one again)."""

T = TypeVar("T")


class TaskChanges:
    """The subscriber of one process: waiting requests register an Event per channel; the thread sets it."""

    def __init__(self, redis: Redis) -> None:
        # A pool of its own: the subscription holds its connection for good.
        shared = redis.connection_pool
        self._redis = Redis(
            connection_pool=ConnectionPool(connection_class=shared.connection_class, **shared.connection_kwargs)
        )
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._closed = False
        self._idle_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="corral-task-changes", daemon=True)
        self._thread.start()

    @contextmanager
    def watching(self, channel: str) -> Iterator[threading.Event]:
        """An Event set whenever something is published on ``channel`` (keys.task_changed_channel or
        keys.workflow_changed_channel) while the caller waits (it clears it before each wait)."""
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(channel, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiting.get(channel)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[channel]

    def wait_subscribed(self, timeout: float) -> bool:
        """Whether the subscription is up (waiting up to ``timeout`` for it): until then a change may be missed."""
        return self._subscribed.wait(timeout)

    def _wake(self, channel: str | None) -> None:
        """Set the events of ``channel``'s waiters, or of every waiter (None)."""
        with self._lock:
            if channel is None:
                events = [event for waiting in self._waiting.values() for event in waiting]
            else:
                events = list(self._waiting.get(channel, ()))
        for event in events:
            event.set()

    @property
    def closed(self) -> bool:
        """Whether the subscriber ended (idle): of_process then starts another."""
        return self._closed

    def _run(self) -> None:
        stop = threading.Event()  # never set: a pause that no signal cuts short
        self._idle_since = time.monotonic()
        lost = False
        while not self._idle_too_long():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(*PATTERNS)
                for _ in PATTERNS:  # the confirmations: subscribed from here on
                    pubsub.get_message(timeout=1.0)
                self._wake(None)  # whatever changed before this subscription: read again
                self._subscribed.set()
                if lost:
                    logger.info("fleet task changes: subscribed again")
                    lost = False
                while not self._idle_too_long():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "pmessage":
                        channel = message["channel"]
                        self._wake(channel.decode() if isinstance(channel, bytes) else str(channel))
            except RedisError as exc:
                if not lost:  # once per outage
                    logger.warning(
                        "fleet task changes: Redis lost, subscribing again every %.0f s: %s", RECONNECT_SECONDS, exc
                    )
                lost = True
            except Exception:
                logger.exception("fleet task changes: subscriber failed; subscribing again")
            finally:
                self._subscribed.clear()
                try:
                    pubsub.close()
                except RedisError:
                    pass
            self._wake(None)
            stop.wait(RECONNECT_SECONDS)

    def _idle_too_long(self) -> bool:
        """Whether nobody waited for IDLE_SECONDS; then the subscriber is closed (of_process starts another)."""
        with self._lock:
            if self._waiting:
                self._idle_since = time.monotonic()
            elif time.monotonic() - self._idle_since > IDLE_SECONDS:
                self._closed = True
        return self._closed


_instances: dict[tuple[int, str], TaskChanges] = {}
_instances_lock = threading.Lock()


def of_process(redis: Redis) -> TaskChanges:
    """The subscriber of this process for ``redis``'s server, started at its first use (after a fork too: threads
    do not cross one) and again after it ended idle."""
    kwargs = redis.connection_pool.connection_kwargs
    key = (os.getpid(), repr(sorted((k, v) for k, v in kwargs.items() if k in ("host", "port", "path", "db"))))
    with _instances_lock:
        changes = _instances.get(key)
        if changes is None or changes.closed:
            for old in [k for k in _instances if k[0] != os.getpid()]:
                del _instances[old]  # a parent's, before a fork
            changes = _instances[key] = TaskChanges(redis)
        return changes


def wait_until(
    redis: Redis, channel: str, seconds: float, poll_seconds: float, read: Callable[[], T | None]
) -> T | None:
    """``read()`` until it answers something other than None (returned), or None once ``seconds`` passed: read
    again each time ``channel`` is told of a change, and every ``poll_seconds`` anyway (a change from elsewhere,
    one a lost subscription missed). The one waiting loop of ``?wait`` callers (tasks, summaries, workflows)."""
    deadline = time.monotonic() + seconds
    watcher = of_process(redis)
    with watcher.watching(channel) as changed:
        watcher.wait_subscribed(min(1.0, seconds))  # before the first read: no change slips by
        while True:
            changed.clear()  # before the read: a change after it sets it again
            found = read()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            changed.wait(min(poll_seconds, remaining))
