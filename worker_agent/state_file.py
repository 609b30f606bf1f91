"""The agent's state files (deployment tasks, fleet commands, business components): JSON, rewritten atomically."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

from shared.file_modes import PRIVATE_FILE

logger = logging.getLogger(__name__)

STATE_FILE_VERSION = 1
"""Layout version of state.json."""


class JsonRecord:
    """Base of the record dataclasses: read back from a state file, keys it does not know (an other agent version's)
    left out."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cast(Any, cls))}
        return cast(Self, cast(Any, cls)(**{k: v for k, v in data.items() if k in known}))


@dataclass(kw_only=True)
class RunRecord(JsonRecord):
    """The fields of every record of something the agent runs (task, command, component): its process, to adopt it
    or kill what it left after a restart, and how it ended."""

    pid: int | None = None
    create_time: float | None = None  # psutil's, to tell our process from a recycled pid
    started_at: float | None = None
    exit_code: int | None = None


def change_record(rec: Any, state: str, changes: Mapping[str, Any]) -> str:
    """Set ``changes`` and then ``state`` on a record; returns the state it had: where every change_state begins."""
    old = str(rec.state)
    for name, value in changes.items():
        setattr(rec, name, value)
    rec.state = state
    return old


def prune_records(records: dict[str, R], is_old: Callable[[R], bool], what: str, node_id: str) -> list[R]:
    """Delete the ended records ``is_old`` says to forget (logged); returns them."""
    old = {key: rec for key, rec in records.items() if is_old(rec)}
    for key in old:
        del records[key]
    if old:
        logger.info("node %s: pruned %d ended %s records", node_id, len(old), what)
    return list(old.values())


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass, so asdict() takes it

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self: ...


R = TypeVar("R", bound=_Record)


class StateFile(Generic[R]):
    """Loads and atomically saves the records (of one ``record_type``) of one data directory."""

    def __init__(self, path: Path, record_type: type[R], section: str = "tasks", mode: int = PRIVATE_FILE) -> None:
        self.path = path
        self.record_type = record_type
        self.section = section
        # Owner only: records carry commands, component specs with their environment and config contents.
        self.mode = mode

    def load(self) -> dict[str, R]:
        """All records by key; an unreadable file is kept aside and an empty state returned."""
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
            return {key: self.record_type.from_dict(rec) for key, rec in data.get(self.section, {}).items()}
        except (ValueError, TypeError, AttributeError):
            # Keep the broken file for inspection rather than crash the agent on every start.
            aside = self.path.with_suffix(".corrupt")
            os.replace(self.path, aside)
            logger.error("state file %s is unreadable; moved to %s and starting empty", self.path, aside)
            return {}

    def save(self, records: dict[str, R]) -> None:
        """Write every record at once (atomic_write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Compact, and each record's fields as they are rather than asdict()'s deep copy: an indented dump
        # takes the json module's Python encoder, and the two made a save of 100 app instances 14 ms -> 4 ms.
        body = json.dumps(
            {"version": STATE_FILE_VERSION, self.section: {key: _fields_of(rec) for key, rec in records.items()}},
            sort_keys=True,
            separators=(",", ":"),
            default=_nested,
        )
        atomic_write(self.path, body.encode(), self.mode)


def _fields_of(rec: Any) -> dict[str, Any]:
    return {f.name: getattr(rec, f.name) for f in fields(rec)}


def _nested(value: Any) -> Any:
    """What json cannot write by itself in a record: a dataclass inside it (as asdict() would)."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Write ``path`` whole or not at all: temp file in the same dir, fsync, rename, fsync of the dir.

    The new file has ``mode`` (less the umask) from its first byte, whatever the one it replaces had.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            # A temp file a crashed agent of the same pid left behind keeps its own mode through O_CREAT.
            os.fchmod(f.fileno(), stat.S_IMODE(os.fstat(f.fileno()).st_mode) & mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
