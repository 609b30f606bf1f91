"""What a ComponentManager does after an agent (re)start: adopt the processes and containers that outlived the
agent, settle those that ended meanwhile, resume deploys and finish stops that were under way."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from shared.states import ComponentState, ComponentType

from ..drivers.process import ProcessDriver
from .outbox import Outbox
from .records import IN_FLIGHT_STATES, PENDING, ComponentRecord
from .serial_work import SerialWork

if TYPE_CHECKING:
    from ..drivers.docker import DockerDriver

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
    docker_host: str | None
    process: ProcessDriver
    outbox: Outbox
    _lock: threading.RLock
    _records: dict[str, ComponentRecord]
    _work: SerialWork

    @property
    def docker(self) -> DockerDriver:
        """The ComponentManager's docker driver, made on first use."""
        raise NotImplementedError

    current: Callable[[str, str], ComponentRecord | None]
    _driver_is_docker: Callable[[ComponentRecord], bool]
    _deploy_one: Callable[[ComponentRecord], None]
    _stop_one: Callable[[ComponentRecord, float | None], None]
    _fail: Callable[..., None]
    _change_state: Callable[..., None]
    _report: Callable[[ComponentRecord], dict[str, Any]]
    _save: Callable[[], None]

    def recover(self) -> None:
        """After an agent (re)start: adopt live processes and containers, settle those that ended meanwhile,
        resume deploys that were under way, finish stops that were under way."""
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: (r.ident, r.generation))
        # With --docker-host given, containers are looked for even without a record of them (a lost state
        # file); otherwise only when a docker component is known, so a process-only agent never loads the SDK.
        if self.docker_host or any(self._driver_is_docker(r) and r.live for r in records):
            self._adopt_containers(records)
        for rec in records:
            if not rec.live:
                continue
            if self._driver_is_docker(rec):
                continue  # done above
            if rec.stop_requested or rec.state == S.STOPPING:
                self.process.adopt(rec)
                self._work.submit(rec.ident, partial(self._stop_one, rec, rec.stop_grace_seconds))
            elif rec.state in IN_FLIGHT_STATES and rec.pid is None:
                logger.info("%s: resuming its deploy after an agent restart", rec.describe())
                with self._lock:
                    rec.state = PENDING
                self._work.submit(rec.ident, partial(self._deploy_one, rec))
            elif self.process.adopt(rec):
                logger.info("%s: adopted pid %s", rec.describe(), rec.pid)
                with self._lock:
                    if rec.state != S.RUNNING:
                        rec.started_at = rec.started_at or time.time()
                    self._change_state(rec, S.RUNNING)  # re-announce: the manager may have missed it
            else:
                code = self.process.exit_status(rec)[1]
                self._fail(rec, lost_message(code), exit_code=code)
        with self._lock:
            for rec in self._records.values():
                if not rec.live and rec.state in (S.FAILED, S.STOPPED):
                    self.outbox.add(self._report(rec))
            self._save()
        self.outbox.flush()

    def _adopt_containers(self, records: list[ComponentRecord]) -> None:
        try:
            found = self.docker.list_ours()
        except Exception as exc:
            logger.warning("node %s: cannot list its containers after a restart: %s", self.node_id, exc)
            for rec in records:
                if self._driver_is_docker(rec) and rec.live:
                    self._fail(rec, f"docker engine unreachable after an agent restart: {exc}")
            return
        self._adopt_unrecorded(found, records)
        for rec in records:
            if not (self._driver_is_docker(rec) and rec.live):
                continue
            container = found.get(rec.key)
            if rec.stop_requested or rec.state == S.STOPPING:
                if container is not None:
                    rec.container_id = container["id"]
                self._work.submit(rec.ident, partial(self._stop_one, rec, rec.stop_grace_seconds))
            elif container is not None and container["running"]:
                logger.info("%s: adopted container %s", rec.describe(), container["id"][:12])
                with self._lock:
                    rec.container_id = container["id"]
                    rec.started_at = rec.started_at or time.time()
                    self._change_state(rec, S.RUNNING)
            elif rec.state in IN_FLIGHT_STATES:  # the start will reuse or replace what it left
                logger.info("%s: resuming its deploy after an agent restart", rec.describe())
                with self._lock:
                    rec.state = PENDING
                self._work.submit(rec.ident, partial(self._deploy_one, rec))
            else:
                code = container["exit_code"] if container is not None else None
                self._fail(rec, lost_message(code), exit_code=code)

    def _adopt_unrecorded(self, found: dict[str, dict[str, Any]], records: list[ComponentRecord]) -> None:
        """Containers of this node that no record names: adopted by their labels, or removed when a newer
        generation of their component is held (what a replacement interrupted by a crash left behind)."""
        known = {rec.key for rec in records}
        for key, container in found.items():
            if key in known:
                continue
            business_id, component_id, generation = (
                container["business_id"],
                container["component_id"],
                container["generation"],
            )
            held = self.current(business_id, component_id)
            if held is not None and held.generation > generation:
                logger.info(
                    "%s: removing container %s of older gen %s", held.describe(), container["id"][:12], generation
                )
                try:
                    self.docker.remove(container["id"])
                except Exception as exc:
                    logger.warning("%s: could not remove container %s: %s", held.describe(), container["id"][:12], exc)
                continue
            rec = ComponentRecord(business_id, component_id, generation, type=ComponentType.DOCKER.value)
            rec.container_id = container["id"]
            with self._lock:
                self._records[rec.key] = rec
                if container["running"]:
                    logger.info(
                        "%s: adopted unrecorded container %s by its labels", rec.describe(), container["id"][:12]
                    )
                    self._change_state(rec, S.RUNNING, started_at=time.time())
                else:
                    code = container["exit_code"]
                    self._change_state(
                        rec, S.FAILED, exit_code=code, error_message=lost_message(code), ended_at=time.time()
                    )
