"""AppInstances: the app instances of one node (jobs.RUN_INSTANCE / STOP_INSTANCE), one supervising thread each,
their records (adopted again by a restarted agent), their ports, and their reports on their way to Redis.

An agent that stops leaves every instance running; the next agent on the same data dir adopts them (same pid,
ports, restart count and health) and reports each one again at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis import Redis

from shared.defaults import APP_LOG_FILE_BYTES, APP_LOG_FILES_KEPT, APP_REPORT_INTERVAL, APP_STABLE_SECONDS
from shared.states import AppHealth, AppInstanceState

from ..components.image_fetch import SftpSettings
from ..components.outbox import Outbox
from . import cgroups
from .instance import Instance
from .ports import PortAllocator
from .records import InstanceRecord, state_file
from .wakeup import Waker

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often an instance's thread looks at its log files when nothing else wakes it: its process's exit
(a pidfd), a check or a restart falling due, a stop, a new job (wakeup.py)."""

CLOSE_SECONDS = 10.0
"""Longest an agent's stop waits for the instances' threads (a health check may be running its timeout)."""

FLUSH_SECONDS = 1.0
"""How often reports held back while Redis was unreachable are tried again."""


class AppInstances:
    """Runs, watches, restarts and stops the app instances of one node."""

    def __init__(
        self,
        data_dir: Path,
        node_id: str,
        publish: Callable[[dict[str, Any]], object],
        *,
        redis: Callable[[], Redis | None] = lambda: None,
        key: Callable[[], bytes | None] = lambda: None,
        host: str = "127.0.0.1",
        sftp: SftpSettings | None = None,
        ports: PortAllocator | None = None,
        poll_interval: float = POLL_SECONDS,
        report_interval: float = APP_REPORT_INTERVAL,
        stable_seconds: float = APP_STABLE_SECONDS,
        log_file_bytes: int = APP_LOG_FILE_BYTES,
        log_files_kept: int = APP_LOG_FILES_KEPT,
        cgroup_root: Path = cgroups.CGROUP_ROOT,
    ) -> None:
        self.data_dir = data_dir
        self.node_id = node_id
        self.redis = redis
        self.key = key
        self.host = host
        self.sftp = sftp or SftpSettings()
        self.ports = ports or PortAllocator()
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.stable_seconds = stable_seconds
        self.log_file_bytes = log_file_bytes
        self.log_files_kept = log_files_kept
        self.cgroup_root = cgroup_root
        # No acknowledgments: every instance is reported again and again.
        self.outbox = Outbox(node_id, publish, what="app instance reports")
        self._state = state_file(data_dir)
        self._lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._wake: dict[str, Waker] = {}
        self._closing = threading.Event()
        self._monitoring = False
        self._dirty = False  # a record changed that the next flush saves (save_soon)
        self._loaded = False  # records read: only then may they be written (or a close would wipe them)
        self._flusher: threading.Thread | None = None

    # -- life of the manager -----------------------------------------------------------------------------------

    def recover(self) -> None:
        """Adopt the instances a previous agent on this data dir left (their processes, ports, health)."""
        records = self._state.load()
        with self._lock:
            self._loaded = True
            for instance_id, rec in records.items():
                if rec.failed is not None:
                    continue
                self.ports.hold(instance_id, rec.ports)
                instance = Instance(rec, self)
                instance.adopt()
                self._instances[instance_id] = instance
            self.save()
        if records:
            logger.info("node %s: %d app instances to adopt", self.node_id, len(self._instances))

    def start_monitor(self) -> None:
        """Start the threads: one per instance, and the one that retries held-back reports."""
        with self._lock:
            self._monitoring = True
            for instance in self._instances.values():
                self._spawn_thread(instance)
        self._flusher = threading.Thread(target=self._flush_loop, name="app-reports", daemon=True)
        self._flusher.start()

    def close(self) -> None:
        """Stop supervising; every instance's process is left running for the next agent to adopt."""
        self._closing.set()
        with self._lock:
            for wake in self._wake.values():
                wake.set()
        deadline = time.monotonic() + CLOSE_SECONDS
        for thread in list(self._threads.values()):
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        with self._lock:
            for instance in self._instances.values():
                instance.let_go()
            self.save()
        self.outbox.flush()

    def closing(self) -> bool:
        return self._closing.is_set()

    def running_count(self) -> int:
        with self._lock:
            return sum(1 for i in self._instances.values() if i.wire_state() == AppInstanceState.RUNNING)

    def census(self) -> list[tuple[str, str, str, int]]:
        """(app, state, health, restarts) of every instance held (the status port's /metrics)."""
        with self._lock:
            return [
                (str(i.rec.spec["app"]), str(i.wire_state()), str(i.rec.health), i.rec.restarts)
                for i in self._instances.values()
            ]

    # -- jobs --------------------------------------------------------------------------------------------------

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Start one instance (InstanceSpecSchema, loaded); the same instance id again is a no-op."""
        instance_id = spec["instance_id"]
        if not self._loaded:
            self.recover()  # never write the records before reading those of the agent before
        with self._lock:
            held = self._instances.get(instance_id)
            if held is not None:
                return {"instance_id": instance_id, "state": held.wire_state(), "already": True}
            rec = InstanceRecord(spec=dict(spec))
            instance = Instance(rec, self)
            self._instances[instance_id] = instance
            self.save()
            if self._monitoring:
                self._spawn_thread(instance)
        return {"instance_id": instance_id, "state": AppInstanceState.STARTING}

    def stop(self, request: dict[str, Any]) -> dict[str, Any]:
        """Stop one instance for good (StopInstanceSchema, loaded); an unknown one is reported stopped at once."""
        instance_id = request["instance_id"]
        with self._lock:
            instance = self._instances.get(instance_id)
            if instance is None:
                self.send(
                    {
                        "app": request["app"],
                        "instance_id": instance_id,
                        "node_id": self.node_id,
                        "version": 0,
                        "state": AppInstanceState.STOPPED,
                        "health": AppHealth.UNKNOWN,
                        "at": time.time(),
                        "reason": "not on this node",
                    }
                )
                return {"instance_id": instance_id, "state": AppInstanceState.STOPPED}
            if instance.rec.stop is None:
                logger.info(
                    "node %s %s: stop requested (%s)",
                    self.node_id,
                    instance.rec.describe(),
                    request.get("reason") or "no reason given",
                )
                instance.rec.stop = dict(request)
                self.save()
            wake = self._wake.get(instance_id)
            if wake is not None:
                wake.set()  # under the lock: its thread closes the pipe only after taking it out of _wake
        return {"instance_id": instance_id, "state": AppInstanceState.STOPPING}

    # -- used by the instances ---------------------------------------------------------------------------------

    def save(self) -> None:
        if not self._loaded:
            return
        with self._lock:
            self._dirty = False
            self._state.save({iid: i.rec for iid, i in self._instances.items()})

    def save_soon(self) -> None:
        """Save on the next flush (within FLUSH_SECONDS): for changes a crash may lose (log read offsets)."""
        self._dirty = True

    def send(self, report: dict[str, Any], soon: bool = True) -> None:
        """Publish ``report``: now, or with the others on the next flush (``soon`` False: periodic reports, which
        say nothing new, go out together, one round trip a second rather than one per instance)."""
        self.outbox.add(report)
        if soon:
            self.outbox.flush_soon()

    def finished(self, instance: Instance) -> None:
        """An instance is over: report it a last time, free its ports and forget it."""
        with self._lock:
            self.ports.release(instance.instance_id)
            self._instances.pop(instance.instance_id, None)
            self._wake.pop(instance.instance_id, None)
            self.save()
        self.send(instance.report())

    # -- threads -----------------------------------------------------------------------------------------------

    def _spawn_thread(self, instance: Instance) -> None:
        wake = Waker()
        self._wake[instance.instance_id] = wake
        thread = threading.Thread(
            target=self._supervise, args=(instance, wake), name=f"app-{instance.instance_id}", daemon=True
        )
        self._threads[instance.instance_id] = thread
        thread.start()

    def _supervise(self, instance: Instance, wake: Waker) -> None:
        try:
            while not self._closing.is_set():
                now = time.time()
                try:
                    if instance.step(now):
                        break
                    instance.tick(now)
                except Exception:
                    logger.exception("node %s %s: supervision step failed", self.node_id, instance.rec.describe())
                wake.wait(instance.wait_seconds(time.time(), self.poll_interval), instance.exit_fd())
        finally:
            with self._lock:
                self._threads.pop(instance.instance_id, None)
                if self._wake.get(instance.instance_id) is wake:
                    self._wake.pop(instance.instance_id)
            wake.close()
            instance.close_exit_fd()

    def _flush_loop(self) -> None:
        while not self._closing.wait(FLUSH_SECONDS):
            if self._dirty:
                self.save()
            self.outbox.flush()
