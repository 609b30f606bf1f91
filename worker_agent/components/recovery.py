"""What a ComponentManager does after an agent (re)start: adopt the processes and containers that outlived the
agent, settle those that ended meanwhile, resume deploys and finish stops that were under way."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial

from shared.states import ComponentState

from ..drivers.base import Driver, Found
from ..drivers.registry import DriverRegistry
from .outbox import Outbox
from .records import IN_FLIGHT_STATES, PENDING, ComponentRecord
from .serial_work import SerialWork

logger = logging.getLogger(__name__)

LOST_ERROR = "ended while the agent was down"

S = ComponentState


def lost_message(exit_code: int | None) -> str:
    """The error of a component found ended after a restart, with its exit code when one is known."""
    return LOST_ERROR + (f" (exit code {exit_code})" if exit_code is not None else "")


class ComponentRecovery:
    """What ComponentManager does after an agent restart (mixed into it), apart from deploy, stop and watch."""

    # What it uses of the ComponentManager it is mixed into.
    node_id: str
    drivers: DriverRegistry
    outbox: Outbox
    _lock: threading.RLock
    _records: dict[str, ComponentRecord]
    _work: SerialWork

    current: Callable[[str, str], ComponentRecord | None]
    _deploy_one: Callable[[ComponentRecord], None]
    _stop_one: Callable[[ComponentRecord, float | None], None]
    _fail: Callable[..., None]
    _change_state: Callable[..., None]
    _save: Callable[[], None]

    def recover(self) -> None:
        """After an agent (re)start: adopt live processes and containers, settle those that ended meanwhile,
        resume deploys that were under way, finish stops that were under way."""
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: (r.ident, r.generation))
        surveys = self._survey(records)
        for rec in records:
            found = surveys.get(self.drivers.type_of(rec.type))
            if rec.live and found is not None:
                self._recover_one(rec, self.drivers.for_record(rec), found)
        with self._lock:
            for rec in self._records.values():
                if not rec.live and rec.state in (S.FAILED, S.STOPPED):
                    self.outbox.add(rec.report(self.node_id))
            self._save()
        self.outbox.flush()

    def _survey(self, records: list[ComponentRecord]) -> dict[str, dict[str, Found]]:
        """What each driver finds by itself, by component type; a driver whose engine cannot be reached fails the
        live records of its type (left out of the answer)."""
        # Only the types with a live record, or looked for anyway (--docker-host): a process-only agent never loads
        # the docker SDK.
        wanted = {self.drivers.type_of(rec.type) for rec in records if rec.live}
        surveys: dict[str, dict[str, Found]] = {}
        for component_type in self.drivers.types():
            if component_type not in wanted and not self.drivers.eager(component_type):
                continue
            driver = self.drivers.of(component_type)
            try:
                found = driver.survey()
            except Exception as exc:
                logger.warning(
                    "node %s: cannot list its %s workloads after a restart: %s", self.node_id, component_type, exc
                )
                for rec in records:
                    if rec.live and self.drivers.type_of(rec.type) == component_type:
                        self._fail(rec, f"{driver.engine} unreachable after an agent restart: {exc}")
                continue
            self._adopt_unrecorded(component_type, driver, found, records)
            surveys[component_type] = found
        return surveys

    def _recover_one(self, rec: ComponentRecord, driver: Driver, found: dict[str, Found]) -> None:
        """Adopt, stop, resume or settle one live record."""
        if rec.stop_requested or rec.state == S.STOPPING:
            driver.adopt(rec, found)  # watched while the stop waits for it
            self._work.submit(rec.ident, partial(self._stop_one, rec, rec.stop_grace_seconds))
            return
        ended = driver.adopt(rec, found)
        if ended is None:
            logger.info("%s: adopted %s", rec.describe(), driver.handle(rec))
            with self._lock:
                if rec.state != S.RUNNING:
                    rec.started_at = rec.started_at or time.time()
                self._change_state(rec, S.RUNNING)  # re-announce: the manager may have missed it
        elif rec.state in IN_FLIGHT_STATES:  # the start will reuse or replace what it left
            logger.info("%s: resuming its deploy after an agent restart", rec.describe())
            with self._lock:
                rec.state = PENDING
            self._work.submit(rec.ident, partial(self._deploy_one, rec))
        else:
            self._fail(rec, lost_message(ended.code), exit_code=ended.code)

    def _adopt_unrecorded(
        self, component_type: str, driver: Driver, found: dict[str, Found], records: list[ComponentRecord]
    ) -> None:
        """Workloads of this node that no record names: adopted by their labels, or removed when a newer
        generation of their component is held (what a replacement interrupted by a crash left behind)."""
        known = {rec.key for rec in records}
        for key, workload in found.items():
            if key in known:
                continue
            business_id, component_id, generation = (
                workload["business_id"],
                workload["component_id"],
                workload["generation"],
            )
            held = self.current(business_id, component_id)
            if held is not None and held.generation > generation:
                what = f"{component_type} workload {workload['id'][:12]}"
                logger.info("%s: removing %s of older gen %s", held.describe(), what, generation)
                try:
                    driver.remove(workload)
                except Exception as exc:
                    logger.warning("%s: could not remove %s: %s", held.describe(), what, exc)
                continue
            rec = ComponentRecord(business_id, component_id, generation, type=component_type)
            ended = driver.adopt(rec, found)
            with self._lock:
                self._records[rec.key] = rec
                if ended is None:
                    logger.info("%s: adopted unrecorded %s by its labels", rec.describe(), driver.handle(rec))
                    self._change_state(rec, S.RUNNING, started_at=time.time())
                else:
                    message = lost_message(ended.code)
                    self._change_state(rec, S.FAILED, exit_code=ended.code, error_message=message, ended_at=time.time())
