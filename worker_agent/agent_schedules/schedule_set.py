"""The set of agent-side schedules this node holds: ``<data dir>/agent-schedules.json`` (0600), one version.

The manager sends a node its FULL set at every change (jobs.SYNC_AGENT_SCHEDULES) and again at each join; sets
may arrive out of order (a change queued while the node was offline, then the one sent at its join), so a set
replaces the held one only when its version is newer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from shared.messages import AgentScheduleSetSchema, schema_of

from ..state_file import atomic_write

logger = logging.getLogger(__name__)

SET_FILE = "agent-schedules.json"
"""Where the held set is kept in the data directory."""


@dataclass(frozen=True)
class ScheduleSet:
    """A node's agent-side schedules (shared.messages.AgentScheduleSchema dicts) at one version."""

    version: int = 0
    schedules: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ScheduleSet:
        """A set from a SYNC_AGENT_SCHEDULES payload or the file (ValidationError when malformed)."""
        data = schema_of(AgentScheduleSetSchema).load(payload)
        return cls(int(data["version"]), list(data["schedules"]))

    def newer_than(self, other: ScheduleSet) -> bool:
        """Whether this set should replace ``other`` (equal versions are the same set: nothing to do)."""
        return self.version > other.version

    def to_json(self) -> bytes:
        return json.dumps({"version": self.version, "schedules": self.schedules}, sort_keys=True).encode()


def load(data_dir: Path) -> ScheduleSet:
    """The held set, or an empty one at version 0 (no file, or one that does not read: logged)."""
    path = data_dir / SET_FILE
    try:
        return ScheduleSet.from_payload(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return ScheduleSet()
    except (OSError, ValueError, ValidationError) as exc:
        # The manager sends the set again at the next join: start empty rather than not at all.
        logger.error("%s does not read (%s): holding no agent schedules until the manager sends them", path, exc)
        return ScheduleSet()


def save(data_dir: Path, held: ScheduleSet) -> None:
    """Write the set (atomically, 0600: commands and their env are the node's business)."""
    atomic_write(data_dir / SET_FILE, held.to_json())
