"""What a ComponentManager's one monitor thread does, round after round: settle the components that ended
(asking each driver only as often as its check interval allows), report usage every interval, retry due stops,
publish held reports, prune old records. Mixed into ComponentManager, as recovery.py is."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from shared.states import ComponentState

from ..drivers.base import Driver
from ..drivers.registry import DriverRegistry
from ..poll_thread import PollThread
from .outbox import Outbox
from .records import ComponentRecord
from .stop_retries import StopRetries

logger = logging.getLogger(__name__)

S = ComponentState


class ComponentWatching:
    """The monitor thread's rounds of a ComponentManager (mixed into it)."""

    # What it uses of the ComponentManager it is mixed into.
    node_id: str
    drivers: DriverRegistry
    outbox: Outbox
    usage_interval: float
    _lock: threading.RLock
    _records: dict[str, ComponentRecord]
    _monitor: PollThread
    _publish: Callable[[dict[str, Any]], object]
    _stop_retries: StopRetries
    _last_usage: float
    _last_prune: float
    _last_check: dict[int, float]

    _retry_due_stops: Callable[[float], None]
    _change_state: Callable[..., None]
    prune: Callable[[], None]

    def start_monitor(self) -> None:
        """Start the one thread that watches every component."""
        self._monitor.start()

    def close(self) -> None:
        """Stop watching and working; components are left running (they outlive the agent)."""
        self._monitor.close()
        for driver in self.drivers.made():
            driver.close()

    def poll(self) -> None:
        """One round: settle components that exited, report usage every interval, publish held reports."""
        now = time.monotonic()
        with self._lock:
            running = [r for r in self._records.values() if r.state == S.RUNNING and not r.stop_requested]
        for rec in self._maybe_ended(running, now):
            self._check_running(rec)
        if now - self._last_usage >= self.usage_interval:
            self._last_usage = now
            self._report_usage([r for r in running if r.state == S.RUNNING])
        if self._stop_retries:
            self._retry_due_stops(now)
        self.outbox.flush()
        if now - self._last_prune > 60:
            self.prune()

    def _maybe_ended(self, running: list[ComponentRecord], now: float) -> list[ComponentRecord]:
        """Those of ``running`` that their driver, when its check interval has passed, says may have ended."""
        by_driver: dict[int, tuple[Driver, list[ComponentRecord]]] = {}
        for rec in running:
            driver = self.drivers.for_record(rec)
            by_driver.setdefault(id(driver), (driver, []))[1].append(rec)
        suspects = []
        for key, (driver, recs) in by_driver.items():
            if now - self._last_check.get(key, 0.0) >= driver.check_interval:
                self._last_check[key] = now
                suspects.extend(driver.watch(recs))
        return suspects

    def _check_running(self, rec: ComponentRecord) -> None:
        try:
            ended = self.drivers.for_record(rec).inspect(rec)
        except Exception as exc:
            logger.warning("%s: could not check it: %s", rec.describe(), exc)
            return
        if ended is None:
            return
        with self._lock:
            if rec.state == S.RUNNING and not rec.stop_requested:
                self._change_state(
                    rec, S.FAILED, exit_code=ended.code, error_message=ended.message, ended_at=time.time()
                )

    def _report_usage(self, running: list[ComponentRecord]) -> None:
        for rec in running:
            try:
                usage = self.drivers.for_record(rec).stats(rec)
            except Exception as exc:
                logger.warning("%s: no usage figures: %s", rec.describe(), exc)
                continue
            if usage is None or rec.state != S.RUNNING:
                continue
            report = rec.report(self.node_id)
            report["resource_usage"] = usage
            try:
                self._publish(report)
            except Exception as exc:
                logger.debug("%s: usage report not published: %s", rec.describe(), exc)
                return  # usage is a sample: the next interval sends a fresh one
        for driver in self.drivers.made():
            driver.tidy()
