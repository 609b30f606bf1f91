"""The component manager: accepts deploy and stop requests at once, does the work in threads of its own.

Work on one component (business id + component id) runs in order in one thread at a time, so a stop
always follows the deploy it answers; different components work in parallel, so a long image download
never holds anything else back. Each component runs on the driver of its type (drivers/, picked from a
registry), through one interface. Every state change goes through ``_change_state``, which logs it,
queues its report and saves the record; reports that could not be published wait in the outbox. What
happens after an agent restart is in recovery.py, the monitor thread's watching in watching.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from redis import Redis

from shared import secret_env
from shared.states import ComponentState

from ..data_dir import COMPONENTS_FILE
from ..drivers.base import StartError
from ..drivers.registry import DriverRegistry, agent_drivers
from ..poll_thread import PollThread
from ..state_file import change_record, prune_records
from .config_files import ConfigFileError, config_file_mode, write_config_files
from .dir_cleanup import remove_generation_dirs
from .image_fetch import SftpSettings
from .outbox import Outbox
from .records import IN_FLIGHT_STATES, ComponentRecord, component_state_file, files_dir
from .recovery import ComponentRecovery
from .serial_work import SerialWork
from .stop_retries import StopRetries
from .watching import ComponentWatching

logger = logging.getLogger(__name__)

Publish = Callable[[dict[str, Any]], object]
"""Appends one component report to the component reports stream; raises when it could not."""

KEEP_ENDED_SECONDS = 24 * 3600.0
"""How long an ended record is kept so that a redelivered deploy stays a no-op."""

UNKNOWN_ERROR = "unknown component on this node"

S = ComponentState


class Cancelled(Exception):
    """The deploy being worked on was stopped or replaced meanwhile."""


class ComponentManager(ComponentRecovery, ComponentWatching):
    """Owns the business components of one node and their records in ``<data dir>/components.json``."""

    def __init__(
        self,
        data_dir: Path,
        node_id: str,
        publish: Publish,
        usage_interval: float = 5.0,
        docker_host: str | None = None,
        sftp: SftpSettings | None = None,
        poll_interval: float = 0.5,
        docker_poll_interval: float = 1.0,
        keep_ended_seconds: float = KEEP_ENDED_SECONDS,
        redis: Callable[[], Redis | None] | None = None,
        drivers: DriverRegistry | None = None,
        key: Callable[[], bytes | None] = lambda: None,
    ) -> None:
        self._key = key  # the node's job key (from the join): opens the sealed secret env of a deploy
        self.data_dir = Path(data_dir).absolute()  # children run elsewhere and are handed paths under it
        self.components_dir = self.data_dir / "components"
        self.node_id = node_id
        self.usage_interval = usage_interval
        self.keep_ended_seconds = keep_ended_seconds
        self.poll_interval = poll_interval
        self._publish = publish
        self._state_file = component_state_file(self.data_dir / COMPONENTS_FILE)
        self._lock = threading.RLock()
        self._records: dict[str, ComponentRecord] = self._state_file.load()
        self._work = SerialWork("corral-component")
        # The agent's process and docker drivers, unless given others (tests give the mock driver).
        self.drivers = drivers or agent_drivers(
            self.components_dir, node_id, self.data_dir, docker_host, sftp or SftpSettings(), docker_poll_interval
        )
        self.outbox = Outbox(node_id, publish, redis)
        self._last_usage = 0.0
        self._last_prune = 0.0
        self._last_check: dict[int, float] = {}  # by id() of the driver: when its workloads were last looked at
        self._stop_retries = StopRetries()
        self._monitor = PollThread(
            "corral-components", self.poll, poll_interval, f"node {node_id}: component", idle=self.nothing_to_watch
        )

    # -- queries -----------------------------------------------------------------------------------

    def records_of(self, business_id: str, component_id: str) -> list[ComponentRecord]:
        """Every generation held of one component, oldest first (live objects; read, do not change)."""
        with self._lock:
            found = [r for r in self._records.values() if r.ident == (business_id, component_id)]
        return sorted(found, key=lambda r: r.generation)

    def current(self, business_id: str, component_id: str) -> ComponentRecord | None:
        found = self.records_of(business_id, component_id)
        return found[-1] if found else None

    def running_count(self) -> int:
        with self._lock:
            return sum(1 for rec in self._records.values() if rec.live)

    def count_by_state(self) -> dict[str, int]:
        """How many component generations the agent keeps a record of, by state (the status port's /metrics)."""
        with self._lock:
            return dict(Counter(rec.state for rec in self._records.values()))

    def nothing_to_watch(self) -> bool:
        """Whether no component is live and every report went out: the monitor may poll at its idle pace."""
        with self._lock:
            live = any(rec.live for rec in self._records.values())
        return not live and self.outbox.empty() and not self._work.busy()

    def idle(self) -> bool:
        """Whether no deploy or stop work is under way (tests)."""
        return not self._work.busy()

    # -- requests (from the job functions; they return at once) ------------------------------------

    def deploy(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Accept one generation of a component: no-op if held, ignored if older, else replace and start."""
        business_id, component_id, generation = spec["business_id"], spec["component_id"], spec["generation"]
        ident = (business_id, component_id)
        with self._lock:
            held = self.current(business_id, component_id)
            if held is not None and held.generation >= generation:
                what = "already held" if held.generation == generation else f"older than the held gen {held.generation}"
                logger.info(
                    "business %s component %s gen %s: deploy ignored, %s (%s)",
                    business_id,
                    component_id,
                    generation,
                    what,
                    held.state,
                )
                return {"accepted": False, "generation": held.generation, "state": held.state}
            rec = ComponentRecord(
                business_id=business_id,
                component_id=component_id,
                generation=generation,
                type=spec["type"],
                spec=dict(spec),
                stop_grace_seconds=spec.get("stop_grace_seconds"),
            )
            self._records[rec.key] = rec
            older = [
                r
                for r in self.records_of(business_id, component_id)
                if r.generation < generation and r.live and not r.stop_requested  # else already being stopped
            ]
            for old in older:
                old.stop_requested = True  # an in-flight deploy of it gives up at its next check
            self._save()
            logger.info("%s: deploy accepted (%s)%s", rec.describe(), rec.type, ", replacing older" if older else "")
        for old in older:
            self._work.submit(ident, partial(self._stop_one, old, old.stop_grace_seconds))
        self._work.submit(ident, lambda: self._deploy_one(rec))
        return {"accepted": True, "generation": generation, "state": rec.state}

    def stop(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Stop and remove the generations held up to ``generation`` (0: all); an unknown one reads stopped."""
        business_id, component_id = request["business_id"], request["component_id"]
        generation, grace = request["generation"], request["grace_seconds"]
        ident = (business_id, component_id)
        with self._lock:
            held = self.records_of(business_id, component_id)
            targets = [r for r in held if generation == 0 or r.generation <= generation]
            if not held:
                # Tell the manager, which would otherwise wait for this component forever. Kept as a
                # record so a late deploy of this generation stays a no-op.
                rec = ComponentRecord(business_id, component_id, generation, type="unknown", stop_requested=True)
                self._records[rec.key] = rec
                self._change_state(rec, S.STOPPED, error_message=UNKNOWN_ERROR, ended_at=time.time())
                return {"stopping": [], "unknown": True}
            if not targets:
                logger.info(
                    "business %s component %s: stop of gen <= %s ignored, holding gen %s",
                    business_id,
                    component_id,
                    generation,
                    held[-1].generation,
                )
                return {"stopping": [], "unknown": False}
            for rec in targets:
                rec.stop_requested = True
            self._save()
        for rec in targets:
            self._work.submit(ident, partial(self._stop_one, rec, grace))
        return {"stopping": [r.generation for r in targets], "unknown": False}

    # -- work (in the component's own thread) ------------------------------------------------------

    def _check(self, rec: ComponentRecord) -> None:
        if rec.stop_requested or self._monitor.closing.is_set():
            raise Cancelled

    def _deploy_one(self, rec: ComponentRecord) -> None:
        if rec.stop_requested or rec.state not in IN_FLIGHT_STATES:
            return  # stopped or replaced before its turn came; the stop work reports it
        try:
            self._check(rec)
            files = write_config_files(
                files_dir(self.components_dir, rec), rec.spec.get("config_files") or [], config_file_mode(rec.type)
            )
            # Opened only now, into the start's environment: components.json keeps the sealed form. A docker
            # component's container holds it from its create on (docker inspect shows it on the node).
            context = secret_env.component_context(rec.business_id, rec.component_id, rec.generation)
            env = {
                **(rec.spec.get("environment_variables") or {}),
                **secret_env.open_sealed(self._key(), context, rec.spec.get("secret_env")),
                "CORRAL_BUSINESS_ID": rec.business_id,
                "CORRAL_COMPONENT_ID": rec.component_id,
            }
            self.drivers.for_record(rec).start(rec, env, files, self._on_step(rec), lambda: self._check(rec))
            with self._lock:
                if rec.stop_requested:
                    raise Cancelled  # the stop work, queued behind this deploy, stops what just started
                # Recorded even when the agent is closing: what runs must be found again after a restart.
                self._change_state(rec, S.RUNNING, started_at=time.time())
        except Cancelled:
            reason = "stopped or replaced" if rec.stop_requested else "the agent is closing"
            logger.info("%s: deploy given up: %s", rec.describe(), reason)
        except ConfigFileError as exc:
            self._fail(rec, f"config files refused: {exc}")
        except secret_env.SecretEnvError as exc:
            self._fail(rec, str(exc))
        except StartError as exc:
            self._fail(rec, str(exc), exit_code=exc.exit_code)
        except Exception as exc:
            logger.exception("%s: deploy failed", rec.describe())
            self._fail(rec, f"deploy failed: {exc}")

    def _on_step(self, rec: ComponentRecord) -> Callable[[ComponentState], None]:
        def step(state: ComponentState) -> None:
            with self._lock:
                self._check(rec)
                self._change_state(rec, state)

        return step

    def _fail(self, rec: ComponentRecord, message: str, exit_code: int | None = None) -> None:
        with self._lock:
            if rec.state in (S.STOPPED, S.FAILED):
                return
            self._change_state(rec, S.FAILED, error_message=message, exit_code=exit_code, ended_at=time.time())

    def _stop_one(self, rec: ComponentRecord, grace: float | None) -> None:
        if rec.state == S.STOPPED:
            with self._lock:
                self._change_state(rec, S.STOPPED)  # again: the manager may have missed it
            return
        grace = grace if grace is not None else float(rec.spec.get("stop_grace_seconds") or 10.0)
        with self._lock:
            prior = rec.state
            if rec.live:
                self._change_state(rec, S.STOPPING)
        exit_code = rec.exit_code
        driver = self.drivers.for_record(rec)
        try:
            if driver.may_run(rec, prior):
                code = driver.stop(rec, grace)
                exit_code = exit_code if prior == S.FAILED else code
        except Exception as exc:
            # Not "stopped": it may still run. Still stopping, with the reason, and tried again later (an
            # engine that was down comes back), as Kubernetes keeps a pod terminating until it is gone.
            with self._lock:
                delay = self._stop_retries.plan(rec.key, grace)
                logger.warning("%s: stop failed, trying again in %.0f s: %s", rec.describe(), delay, exc)
                self._change_state(rec, S.STOPPING, error_message=f"could not stop it, trying again: {exc}")
            return
        with self._lock:
            self._stop_retries.done(rec.key)
            driver.forget(rec)
            self._change_state(rec, S.STOPPED, exit_code=exit_code, error_message=None, ended_at=time.time())

    def _retry_due_stops(self, now: float) -> None:
        due = []
        with self._lock:
            for key, grace in self._stop_retries.due(now):
                rec = self._records.get(key)
                if rec is None or rec.state != S.STOPPING:
                    self._stop_retries.done(key)
                else:
                    due.append((rec, grace))
        for rec, grace in due:
            self._work.submit(rec.ident, partial(self._stop_one, rec, grace))

    # -- state changes and reports -----------------------------------------------------------------

    def _change_state(self, rec: ComponentRecord, state: ComponentState, **changes: Any) -> None:
        """The one way a component changes state: update, log, report, save. Call with the lock held."""
        old = change_record(rec, state.value, changes)
        log = logger.warning if state == S.FAILED else logger.info
        log(
            "node %s %s: %s -> %s (pid %s, container %s, exit code %s%s)",
            self.node_id,
            rec.describe(),
            old,
            rec.state,
            rec.pid,
            (rec.container_id or "-")[:12],
            rec.exit_code,
            f", error: {rec.error_message}" if rec.error_message else "",
        )
        self.outbox.add(rec.report(self.node_id))
        self._save()
        self.outbox.flush_soon()
        self._monitor.wake()  # a change: watch it (or publish it again) at the busy pace

    def prune(self) -> None:
        """Forget the records that ended more than ``keep_ended_seconds`` ago, and remove their directories."""
        self._last_prune = time.monotonic()
        cutoff = time.time() - self.keep_ended_seconds
        with self._lock:
            old = prune_records(
                self._records, lambda r: not r.live and (r.ended_at or 0) < cutoff, "component", self.node_id
            )
            if not old:
                return
            self._save()
            # Under the lock: a deploy of the same component cannot slip in between the check and the removal.
            for rec in old:
                last = not self.records_of(rec.business_id, rec.component_id)
                remove_generation_dirs(self.components_dir, rec, last, self.node_id)

    def _save(self) -> None:
        with self._lock:
            self._state_file.save(self._records)
