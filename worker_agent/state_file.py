"""The agent's state files: JSON rewritten atomically (deployment tasks, business components, app instances), or a
journal of JSON lines appended (fleet commands)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
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


JOURNAL_SYNC_SECONDS = 1.0
"""At most this long between a record's append and its fsync (RecordJournal.sync), as Redis's appendfsync everysec."""

JOURNAL_SLACK_LINES = 1000
"""Lines a journal may hold beyond twice its live records before it is rewritten whole (compact)."""


class RecordJournal(Generic[R]):
    """Records kept as a journal: one JSON line per saved state of one record, appended, the last line of a key
    winning; rewritten whole (compact) when the lines of older states outnumber the live records.

    Why not a StateFile: a fleet command is saved as it starts and again as it is reported, and a node keeps a
    day of them. Rewriting every record with two fsyncs at each save cost the agent more than running `echo hi`
    and grew with the day's commands. An append is one write(2): it reaches the kernel at once, so an agent that
    dies loses nothing; the file is fsynced by sync(), at most JOURNAL_SYNC_SECONDS later, so a machine that
    crashes loses at most that much, and the commands died with it. A line torn by a crash mid-write is skipped
    as the journal is read back.
    """

    def __init__(
        self,
        path: Path,
        record_type: type[R],
        key: Callable[[R], str],
        legacy: StateFile[R] | None = None,
        mode: int = PRIVATE_FILE,
    ) -> None:
        self.path = path
        self.record_type = record_type
        self.key = key
        self.legacy = legacy
        """The StateFile an older agent kept these records in: read once when there is no journal yet, then removed."""
        self.mode = mode
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lines = 0
        self._live = 0
        self._unsynced = False
        self._last_sync = time.monotonic()

    def load(self) -> dict[str, R]:
        """All records by key, from the journal (or, the first time, from the legacy StateFile, moved over)."""
        records: dict[str, R] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self.legacy is not None and self.legacy.path.exists():
                records = self.legacy.load()
                self.compact(records)
                self.legacy.path.unlink(missing_ok=True)
            return records
        lines = 0
        for line in raw.splitlines():
            try:
                rec = self.record_type.from_dict(json.loads(line))
            except (ValueError, TypeError, AttributeError):
                logger.warning("journal %s: an unreadable line skipped (torn by a crash?)", self.path)
                continue
            records[self.key(rec)] = rec
            lines += 1
        self._lines, self._live = lines, len(records)
        if raw and not raw.endswith(b"\n"):
            self.compact(records)  # a torn last line: the next append must not run on from it
        return records

    def append(self, records: Iterable[R], live: int) -> None:
        """Append the current state of ``records``; ``live``: how many records the journal holds now (for compact)."""
        data = b"".join(_line(rec) for rec in records)
        if not data:
            return
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, self.mode)
            os.write(self._fd, data)
            self._lines += data.count(b"\n")
            self._live = live
            self._unsynced = True

    @property
    def unsynced(self) -> bool:
        """Whether something appended waits for its fsync (sync)."""
        return self._unsynced

    def needs_compacting(self) -> bool:
        """Whether the older states outnumber the live records enough to rewrite the journal (compact)."""
        return self._lines > 2 * self._live + JOURNAL_SLACK_LINES

    def compact(self, records: Mapping[str, R]) -> None:
        """Rewrite the journal with one line per record of ``records`` (atomic_write): what pruning calls too."""
        data = b"".join(_line(rec) for rec in records.values())
        with self._lock:
            self._close()
            atomic_write(self.path, data, self.mode)
            self._lines = self._live = len(records)
            self._unsynced = False
            self._last_sync = time.monotonic()

    def sync(self, force: bool = False) -> None:
        """fsync what was appended, if JOURNAL_SYNC_SECONDS have passed since the last (or ``force``)."""
        with self._lock:
            if self._fd is None or not self._unsynced:
                return
            if not force and time.monotonic() - self._last_sync < JOURNAL_SYNC_SECONDS:
                return
            os.fsync(self._fd)
            self._unsynced = False
            self._last_sync = time.monotonic()

    def close(self) -> None:
        """fsync and close the journal (reopened by the next append)."""
        self.sync(force=True)
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _line(rec: Any) -> bytes:
    return (json.dumps(_fields_of(rec), sort_keys=True, separators=(",", ":"), default=_nested) + "\n").encode()
