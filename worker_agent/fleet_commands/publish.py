"""The Redis side of fleet commands: output lines to the live output, reports in order, held while Redis is down,
final reports sent again until the manager acknowledges them (report_acks)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from marshmallow import ValidationError
from redis import Redis
from redis.exceptions import RedisError

from shared import acks, report_streams
from shared.file_modes import make_private_dir
from shared.states import HostRunStatus

from ..report_acks import PendingAcks
from ..state_file import atomic_write
from .output import StreamCapture

logger = logging.getLogger(__name__)

PUBLISH_RETRY_SECONDS = 2.0
"""Pause between two attempts to publish held-back output and reports while Redis is unreachable."""

RUNNING_HOLD_SECONDS = 0.05
"""How long a running report waits for its command's end: a short command's two reports then go out in one
transaction, which the manager reads in one batch and applies in one database transaction instead of two."""

BATCH_REPORTS = 500
"""Reports sent in one transaction at most."""

TRANSACTION_LINES = 200
"""Output lines of one round sent in the reports' transaction at most; more go ahead in a pipeline of their own
(Redis runs a transaction whole, other clients waiting, and a pipeline command by command)."""

Output = list[tuple[str, StreamCapture, list[str]]]
"""Output lines to append: (task id, its capture, the capture's pending lines)."""

RedisSource = Callable[[], Redis | None]
"""Returns the agent's current Redis connection (None before the agent connected)."""

KeySource = Callable[[], bytes | None]
"""Returns the node's signing key from its join (None for an agent on a bare Redis): reports are signed with it."""


def is_final(report: dict[str, Any]) -> bool:
    """Whether a report is a command's last one (not the ``running`` one)."""
    return bool(report["status"] != HostRunStatus.RUNNING)


class CommandPublisher:
    """Publishes the output lines and reports of one node's commands; the only part that talks to Redis.

    A final report that could not be published is also written to ``held_dir``, so that its output
    survives an agent restart; ``on_final_published`` is told the task id once one went out, and
    ``on_acknowledged`` once the manager acknowledged it (until then it is sent again now and then).
    """

    def __init__(
        self,
        node_id: str,
        redis: RedisSource,
        held_dir: Path,
        on_final_published: Callable[[str], None],
        job_key: KeySource = lambda: None,
        on_acknowledged: Callable[[str], None] = lambda task_id: None,
    ) -> None:
        self.node_id = node_id
        self._redis = redis
        self._job_key = job_key
        self._held_dir = held_dir
        self._on_final_published = on_final_published
        self._on_acknowledged = on_acknowledged
        self.unacknowledged = PendingAcks(node_id, acks.COMMAND)
        self._outbox: deque[tuple[float, dict[str, Any]]] = deque()  # (monotonic time queued, report)
        self._lock = threading.Lock()
        self._failing = False
        self._retry_after = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._outbox)

    def add(self, report: dict[str, Any]) -> None:
        """Queue a report behind the ones already queued."""
        with self._lock:
            self._outbox.append((time.monotonic(), report))

    def hold_left(self) -> float | None:
        """Seconds until the report at the head of the queue may go (0: now, or after a failure), None: queue empty."""
        with self._lock:
            if not self._outbox:
                return None
            queued_at, _report = self._outbox[0]
        return max(0.0, queued_at + RUNNING_HOLD_SECONDS - time.monotonic())

    def ready(self) -> bool:
        """False while waiting out the pause after a failure."""
        return time.monotonic() >= self._retry_after

    def flush(self, streams: Iterable[tuple[str, StreamCapture]], finals: list[dict[str, Any]]) -> bool:
        """One round of the runner: the pending lines of (task id, capture) pairs, the due reports, then ``finals``
        (the final reports of commands whose every line is among those) queued behind them, in one transaction.

        One round trip for an `echo hi`'s line and both its reports, where the lines and the reports went apart.
        Returns False when Redis failed or is not connected yet: nothing of the round was taken, ``finals``
        not queued (the caller offers them again with their lines next round).
        """
        output = [(task_id, capture, capture.pending()) for task_id, capture in streams]
        output = [item for item in output if item[2]]
        if sum(len(lines) for _task_id, _capture, lines in output) > TRANSACTION_LINES:
            if not self.append_output((task_id, capture) for task_id, capture, _lines in output):
                return False
            output = []
        return self.publish(output, finals)

    def append_output(self, streams: Iterable[tuple[str, StreamCapture]]) -> bool:
        """Append the pending lines of (task id, capture) pairs to the live output; False when Redis failed."""
        todo = [(task_id, capture, capture.pending()) for task_id, capture in streams]
        todo = [item for item in todo if item[2]]
        if not todo:
            return True
        redis = self._redis()
        if redis is None:
            return False  # not connected yet: nothing failed, try again next round
        for task_id, capture, lines in todo:
            try:
                report_streams.append_output(redis, task_id, self.node_id, capture.name, lines, key=self._job_key())
            except Exception as exc:
                self._failed(task_id, "output", exc)
                return False
            capture.sent(len(lines))
        self._recovered()
        return True

    def publish(self, output: Output | None = None, finals: list[dict[str, Any]] | None = None) -> bool:
        """Publish ``output``'s lines, the queued reports in order, then ``finals``, in one transaction; a running
        report may wait (RUNNING_HOLD_SECONDS), and the reports behind it. False when Redis failed (or is not
        connected yet): then the lines stay pending and ``finals`` are not queued.

        MULTI/EXEC, not a plain pipeline: Redis serves a blocked XREADGROUP after each command of a pipeline,
        but only once after a transaction, so the manager reads a command's running and final reports together.
        The output lines go first: a final report is never read before the last line of its command.
        """
        output = output or []
        redis = self._redis()
        if redis is None:
            return False
        at = time.monotonic()
        new = [(at, report) for report in finals or []]
        with self._lock:
            head = len(self._outbox)  # only this thread takes from the queue; others append behind
            batch = self._due([*self._outbox, *new], at)
        sent: list[dict[str, Any]] = []
        if batch or output:
            pipe = redis.pipeline(transaction=True)
            key = self._job_key()
            for task_id, capture, lines in output:
                report_streams.append_output(pipe, task_id, self.node_id, capture.name, lines, key=key)
            for report in batch:
                try:
                    report_streams.publish_command_report(pipe, report, key=key)
                except ValidationError as exc:
                    logger.error("node %s task %s: dropping malformed report: %s", self.node_id, report["task_id"], exc)
                    continue
                sent.append(report)
            try:
                if sent or output:
                    pipe.execute()
            except Exception as exc:
                first = output[0][0] if output else sent[0]["task_id"]
                self._failed(first, "output" if output else f"{sent[0]['status']} report", exc)
                for report in sent:
                    if is_final(report):
                        self.hold(report)
                return False
            finally:
                pipe.reset()
            for _task_id, capture, lines in output:
                capture.sent(len(lines))
        with self._lock:
            for _ in range(min(len(batch), head)):
                self._outbox.popleft()
            # The finals not sent wait right behind what was queued before them.
            for offset, item in enumerate(new[max(0, len(batch) - head) :]):
                self._outbox.insert(max(0, head - len(batch)) + offset, item)
        for report in sent:
            if is_final(report):
                self.unacknowledged.sent(report["task_id"], report)
                self._on_final_published(report["task_id"])
        if batch or output:
            self._recovered()
        return True

    def check_acknowledgments(self) -> None:
        """Now and then while final reports wait: forget the acknowledged ones, queue those due to go again."""
        if not self.unacknowledged.check_due():
            return
        redis = self._redis()
        if redis is None:
            return
        try:
            acknowledged, again = self.unacknowledged.check(redis)
        except RedisError as exc:
            self._failed("-", "acknowledgment check", exc)
            return
        for task_id in acknowledged:
            self._held_path(task_id).unlink(missing_ok=True)  # kept until now: a re-sent report has its output
            self._on_acknowledged(task_id)
        for report in again:
            self.add(report)

    def _due(self, queued: list[tuple[float, dict[str, Any]]], now: float) -> list[dict[str, Any]]:
        """The reports of ``queued`` that may go now: up to the first running report still held."""
        ending = {report["task_id"] for _queued_at, report in queued if is_final(report)}
        batch: list[dict[str, Any]] = []
        for queued_at, report in queued:
            held = now < queued_at + RUNNING_HOLD_SECONDS and report["task_id"] not in ending
            if (held and not is_final(report)) or len(batch) >= BATCH_REPORTS:
                break  # the reports behind it wait too: they go out in order
            batch.append(report)
        return batch

    def hold_all(self) -> None:
        """Write every queued or unacknowledged final report to disk (the agent stops)."""
        with self._lock:
            finals = [report for _queued_at, report in self._outbox if is_final(report)]
        for report in finals + self.unacknowledged.reports():
            self.hold(report)

    def hold(self, report: dict[str, Any]) -> None:
        """Keep an unpublished final report on disk, so it survives an agent restart with its output."""
        path = self._held_path(report["task_id"])
        if path.exists():
            return
        make_private_dir(self._held_dir)
        # Owner only (atomic_write's mode): a report carries its command's output, which may show its secrets.
        atomic_write(path, json.dumps(report).encode())

    def load_held(self, task_id: str) -> dict[str, Any] | None:
        """The final report a previous agent held for ``task_id``, if any."""
        try:
            report: dict[str, Any] = json.loads(self._held_path(task_id).read_text())
        except (OSError, ValueError):
            return None
        return report if report.get("task_id") == task_id else None

    def _held_path(self, task_id: str) -> Path:
        # Task ids come from the wire: hashed, never used as a file name.
        return self._held_dir / (hashlib.sha256(task_id.encode()).hexdigest()[:32] + ".json")

    def _failed(self, task_id: str, what: str, exc: Exception) -> None:
        if not self._failing:
            logger.warning("node %s task %s: could not publish %s, will retry: %s", self.node_id, task_id, what, exc)
        self._failing = True
        self._retry_after = time.monotonic() + PUBLISH_RETRY_SECONDS

    def _recovered(self) -> None:
        if self._failing:
            logger.info("node %s: publishing command output and reports again", self.node_id)
            self._failing = False
