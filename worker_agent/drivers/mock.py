"""The mock driver: workloads held in memory, for unit tests of the logic above the drivers (no process, no engine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.states import ComponentState

from ..components.records import ComponentRecord, record_key
from .base import Check, ConfigFiles, Exit, Found, StartError, Step


@dataclass
class MockWorkload:
    """One workload of the mock driver: what it was started with, and how it is doing."""

    business_id: str
    component_id: str
    generation: int
    id: str
    env: dict[str, str] = field(default_factory=dict)
    running: bool = True
    exit_code: int | None = None
    message: str = ""
    stop_grace: float | None = None  # the grace its stop was given, once stopped
    cpu_percent: float = 1.5
    memory_mb: float = 20.0


class MockDriver:
    """Implements the driver interface in memory; tests steer it (exit, fail_start, unreachable) and read it
    (workloads, calls)."""

    engine = "mock engine"
    check_interval = 0.0

    def __init__(self, stop_exit_code: int = -15) -> None:
        self.stop_exit_code = stop_exit_code  # what a stop of a running workload returns (SIGTERM's by default)
        self.workloads: dict[str, MockWorkload] = {}
        self.stopped: dict[str, MockWorkload] = {}  # what stop() ended, by record key
        self.calls: list[tuple[str, str]] = []  # (method, record key), in order
        self.start_error: str | None = None  # set: every start raises StartError with it
        self.stop_error: str | None = None  # set: every stop raises RuntimeError with it
        self.unreachable: str | None = None  # set: survey and inspect raise RuntimeError with it
        self.closed = False
        self._next_id = 1000

    # -- what tests steer with ---------------------------------------------------------------------

    def exit(self, key: str, code: int | None, message: str = "") -> None:
        """The workload ``key`` ends by itself with ``code``."""
        workload = self.workloads[key]
        workload.running, workload.exit_code, workload.message = False, code, message or f"exited with code {code}"

    def leave(self, business_id: str, component_id: str, generation: int, running: bool = True) -> MockWorkload:
        """A workload as a previous agent left it (for recovery tests)."""
        workload = MockWorkload(business_id, component_id, generation, self._new_id(), running=running)
        if not running:
            workload.exit_code = 1
        self.workloads[record_key(business_id, component_id, generation)] = workload
        return workload

    def _new_id(self) -> str:
        self._next_id += 1
        return f"mock-{self._next_id}"

    # -- the driver interface ----------------------------------------------------------------------

    def handle(self, rec: ComponentRecord) -> str:
        """The workload id, for log lines."""
        return f"mock {rec.container_id}"

    def start(self, rec: ComponentRecord, env: dict[str, str], files: ConfigFiles, step: Step, check: Check) -> None:
        """Record a running workload for ``rec``; its id stands in for a container id."""
        self.calls.append(("start", rec.key))
        step(ComponentState.STARTING)
        check()
        if self.start_error is not None:
            raise StartError(self.start_error)
        workload = MockWorkload(rec.business_id, rec.component_id, rec.generation, self._new_id(), dict(env))
        self.workloads[rec.key] = workload
        rec.container_id = workload.id

    def inspect(self, rec: ComponentRecord) -> Exit | None:
        """None while it runs; else its exit code and message."""
        self.calls.append(("inspect", rec.key))
        if self.unreachable is not None:
            raise RuntimeError(self.unreachable)
        workload = self.workloads.get(rec.key)
        if workload is None:
            return Exit(None, "the workload is gone")
        return None if workload.running else Exit(workload.exit_code, workload.message)

    def watch(self, running: list[ComponentRecord]) -> list[ComponentRecord]:
        """Every one (inspect is as cheap)."""
        return running

    def may_run(self, rec: ComponentRecord, prior: str) -> bool:
        """Whether a workload was started for it."""
        return rec.key in self.workloads

    def stop(self, rec: ComponentRecord, grace_seconds: float) -> int | None:
        """End the workload (stop_exit_code when it ran), remember the grace, remove it."""
        self.calls.append(("stop", rec.key))
        if self.stop_error is not None:
            raise RuntimeError(self.stop_error)
        workload = self.workloads.pop(rec.key, None)
        if workload is None:
            return None
        workload.stop_grace = grace_seconds
        self.stopped[rec.key] = workload
        return self.stop_exit_code if workload.running else workload.exit_code

    def stats(self, rec: ComponentRecord) -> dict[str, Any] | None:
        """Fixed figures while it runs."""
        workload = self.workloads.get(rec.key)
        if workload is None or not workload.running:
            return None
        return {"cpu_percent": workload.cpu_percent, "memory_mb": workload.memory_mb, "gpu_percent": None}

    def tidy(self) -> None:
        """Nothing kept."""

    def survey(self) -> dict[str, Found]:
        """Every workload it holds, as a driver finds them by their labels."""
        if self.unreachable is not None:
            raise RuntimeError(self.unreachable)
        return {
            key: {
                "business_id": w.business_id,
                "component_id": w.component_id,
                "generation": w.generation,
                "id": w.id,
                "running": w.running,
                "exit_code": w.exit_code,
            }
            for key, w in self.workloads.items()
        }

    def adopt(self, rec: ComponentRecord, found: dict[str, Found]) -> Exit | None:
        """None when its workload still runs, else its exit code."""
        self.calls.append(("adopt", rec.key))
        workload = self.workloads.get(rec.key)
        if workload is None:
            return Exit(None)
        rec.container_id = workload.id
        return None if workload.running else Exit(workload.exit_code)

    def remove(self, found: Found) -> None:
        """Drop a workload survey() found."""
        key = record_key(found["business_id"], found["component_id"], found["generation"])
        self.calls.append(("remove", key))
        self.workloads.pop(key, None)

    def forget(self, rec: ComponentRecord) -> None:
        """Note it: the manager lets go of a settled workload."""
        self.calls.append(("forget", rec.key))

    def close(self) -> None:
        """Note it: the workloads keep running."""
        self.closed = True
