"""What the agent remembers about each business component generation (kept in ``components.json``), and where its
directories are."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.states import ComponentState

from ..state_file import RunRecord, StateFile

PENDING = ComponentState.PENDING.value
"""Accepted, its work not begun yet; internal, never published (not an agent-reported state)."""

IN_FLIGHT_STATES = frozenset({PENDING, ComponentState.DOWNLOADING.value, ComponentState.STARTING.value})
"""States of a record whose deploy work was under way."""

LIVE_STATES = IN_FLIGHT_STATES | {ComponentState.RUNNING.value, ComponentState.STOPPING.value}
"""States of a record whose process or container may exist and run."""


def record_key(business_id: str, component_id: str, generation: int) -> str:
    """The key of one generation of one component in the state file."""
    return f"{business_id}/{component_id}/{generation}"


@dataclass
class ComponentRecord(RunRecord):
    """One generation of one component: enough to adopt, stop or settle it after an agent restart."""

    business_id: str
    component_id: str
    generation: int
    type: str
    state: str = PENDING
    spec: dict[str, Any] = field(default_factory=dict)  # the ComponentSpecSchema payload, to resume a deploy
    container_id: str | None = None
    ended_at: float | None = None
    error_message: str | None = None
    stop_requested: bool = False
    stop_grace_seconds: float | None = None

    @property
    def key(self) -> str:
        return record_key(self.business_id, self.component_id, self.generation)

    @property
    def ident(self) -> tuple[str, str]:
        return self.business_id, self.component_id

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def report(self, node_id: str) -> dict[str, Any]:
        """The component report of its current state, as the component reports stream takes it."""
        return {
            "business_id": self.business_id,
            "component_id": self.component_id,
            "node_id": node_id,
            "generation": self.generation,
            "status": self.state,
            "timestamp": time.time(),
            "container_id": self.container_id,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "resource_usage": None,
            "error_message": self.error_message,
        }

    def describe(self) -> str:
        """The ids for log lines."""
        return f"business {self.business_id} component {self.component_id} gen {self.generation}"


def component_state_file(path: Path) -> StateFile[ComponentRecord]:
    """The file of every component record of one data directory, by key; owner-only, as specs carry env values."""
    return StateFile(path, ComponentRecord, section="components", mode=0o600)


def component_dir(components_dir: Path, business_id: str, component_id: str) -> Path:
    """Where every generation of one component keeps its directories."""
    return components_dir / business_id / component_id


def run_dir(components_dir: Path, rec: ComponentRecord) -> Path:
    """Logs and exit status of one generation (a process component's)."""
    return component_dir(components_dir, rec.business_id, rec.component_id) / f"gen-{rec.generation}"


def files_dir(components_dir: Path, rec: ComponentRecord) -> Path:
    """The config files of a component, shared by its generations."""
    return component_dir(components_dir, rec.business_id, rec.component_id) / "files"
