"""The interface every component driver implements (one module per driver, as Nomad's drivers), and its types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.states import ComponentState

if TYPE_CHECKING:
    from ..components.records import ComponentRecord

Step = Callable[[ComponentState], None]
"""Reports a step of a start (DOWNLOADING, STARTING); raises when the deploy was given up meanwhile."""

Check = Callable[[], None]
"""Raises when the deploy was given up (stopped, replaced, the agent closing): called between long steps."""

ConfigFiles = list[tuple[PurePosixPath, Path]]
"""The config files written for a component: (path the component sees, path on this node)."""

Found = dict[str, Any]
"""A workload a driver found on the node by itself (survey): business_id, component_id, generation, id, running,
exit_code."""


class StartError(Exception):
    """A component could not be started; the message says why."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Exit:
    """How a workload ended: its exit code when known, and why in words (with its last log lines when any)."""

    code: int | None
    message: str = ""


@runtime_checkable
class Driver(Protocol):
    """Runs one type of component workload: start, inspect, stop with grace, stats, adopt after a restart."""

    engine: str
    """What the driver talks to, for messages ("docker engine")."""

    check_interval: float
    """Seconds between two looks at its running workloads; 0: every round of the monitor."""

    def handle(self, rec: ComponentRecord) -> str:
        """What names the workload of ``rec`` in log lines ("pid 1234", "container 0123456789ab")."""
        ...

    def start(self, rec: ComponentRecord, env: dict[str, str], files: ConfigFiles, step: Step, check: Check) -> None:
        """Start the workload of ``rec`` (reporting STARTING through ``step``) and record its handle in ``rec``
        (pid, container id); raises StartError with the reason when it cannot."""
        ...

    def inspect(self, rec: ComponentRecord) -> Exit | None:
        """None while the workload runs; else how it ended."""
        ...

    def watch(self, running: list[ComponentRecord]) -> list[ComponentRecord]:
        """Those of ``running`` that may have ended and need an inspect (one call for all where it can)."""
        ...

    def may_run(self, rec: ComponentRecord, prior: str) -> bool:
        """Whether a workload may exist for ``rec``, which was in state ``prior`` before its stop."""
        ...

    def stop(self, rec: ComponentRecord, grace_seconds: float) -> int | None:
        """Ask the workload to end, kill it after ``grace_seconds``, remove it; returns its exit code when known.

        Raises when it could not (the caller tries again later)."""
        ...

    def stats(self, rec: ComponentRecord) -> dict[str, Any] | None:
        """CPU % and memory of the workload (the resource_usage fields), or None when nothing runs to measure."""
        ...

    def tidy(self) -> None:
        """After a round of stats: drop what the driver keeps of workloads that are gone."""
        ...

    def survey(self) -> dict[str, Found]:
        """After an agent restart: the workloads of this node the driver finds by itself, by record key."""
        ...

    def adopt(self, rec: ComponentRecord, found: dict[str, Found]) -> Exit | None:
        """After an agent restart: None when the workload of ``rec`` still runs (watched from now on), else how it
        ended meanwhile. ``found`` is what survey() returned."""
        ...

    def remove(self, found: Found) -> None:
        """Remove a workload survey() found that no record wants any more (what a replacement left)."""
        ...

    def forget(self, rec: ComponentRecord) -> None:
        """Drop what the driver holds for ``rec``, stopped and settled."""
        ...

    def close(self) -> None:
        """Let go of the engine and the handles; the workloads keep running (they outlive the agent)."""
        ...
