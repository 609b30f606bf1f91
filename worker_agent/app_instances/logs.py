"""An instance's stdout and stderr: written by the process itself into files of the agent's data dir (so it
outlives the agent), read back by the agent, rotated when too big, and appended line by line to the instance's
Redis log stream (shared.report_streams.append_instance_log), batched, where the manager's logs endpoint reads.

Rotation copies the file to ``.1`` (the older ones shifted up to APP_LOG_FILES_KEPT) and truncates it in place,
as logrotate's copytruncate does: the process holds the file open in append mode, so it writes on at the start
of the emptied file. The agent reads the file's unread tail and truncates it in two back-to-back calls, so only
a write landing between exactly those two can be lost.
"""

from __future__ import annotations

import codecs
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from shared import report_streams
from shared.defaults import APP_LOG_FILE_BYTES, APP_LOG_FILES_KEPT

logger = logging.getLogger(__name__)

STREAMS = ("stdout", "stderr")
"""The two log streams of an instance; each one's file is ``<stream>.log``."""

READ_BYTES = 256 * 1024
"""Most bytes read from one log file per tick."""

LINE_CHARS = 16 * 1024
"""A longer line goes to the stream in pieces of this size."""

MAX_PENDING_LINES = 10_000
"""Most lines held back while Redis is down (the oldest dropped: the files keep them)."""


class LogFile:
    """One stream of one instance: where the agent has read up to, and its lines not yet in Redis."""

    def __init__(self, path: Path, stream: str, offset: int = 0) -> None:
        self.path = path
        self.stream = stream
        self.offset = offset
        self.pending: list[str] = []
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def size(self) -> int | None:
        """The file's size now (None when it is not there)."""
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return None

    def read(self) -> None:
        """Read what was written since the last read into pending lines."""
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:
                    self.offset = 0  # truncated behind our back
                f.seek(self.offset)
                data = f.read(READ_BYTES)
        except FileNotFoundError:
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self.offset += len(data)
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        if len(self._partial) > LINE_CHARS:
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            for start in range(0, max(len(line), 1), LINE_CHARS):
                self.pending.append(line[start : start + LINE_CHARS])
        del self.pending[:-MAX_PENDING_LINES]

    def rotate_if_big(self, max_bytes: int = APP_LOG_FILE_BYTES, kept: int = APP_LOG_FILES_KEPT) -> bool:
        """Once the file is past ``max_bytes``, move its content to ``.1`` (older ones shifted) and empty it; True if
        it did. The unread tail is read and the file truncated back to back, so what the process writes meanwhile
        lands in the emptied file rather than being lost (bar a write between those two calls)."""
        try:
            if self.path.stat().st_size < max_bytes:
                return False
        except FileNotFoundError:
            return False
        copy = self.path.with_name(f".{self.path.name}.rotating")
        shutil.copyfile(self.path, copy)  # the slow part, before the truncation
        with open(self.path, "r+b") as f:
            f.seek(self.offset)
            tail = f.read()
            f.truncate(0)
        read_up_to = self.offset
        self._feed(tail)
        self.offset = 0
        with open(copy, "r+b") as c:
            c.truncate(read_up_to)
            c.seek(read_up_to)
            c.write(tail)
        for index in range(kept - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                if index + 1 >= kept:
                    older.unlink()
                else:
                    older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if kept > 1:
            copy.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            copy.unlink()
        return True


class InstanceLogs:
    """The two log files of one instance and their shipping to its Redis log stream."""

    def __init__(self, log_dir: Path, node_id: str, instance_id: str, offsets: dict[str, int] | None = None) -> None:
        self.log_dir = log_dir
        self.node_id = node_id
        self.instance_id = instance_id
        offsets = offsets or {}
        self.files = {s: LogFile(log_dir / f"{s}.log", s, offsets.get(s, 0)) for s in STREAMS}

    def path(self, stream: str) -> Path:
        return self.files[stream].path

    def offsets(self) -> dict[str, int]:
        """Where each file was read up to (kept in the instance's record: a new agent goes on from there)."""
        return {s: f.offset for s, f in self.files.items()}

    def pump(
        self,
        redis: Redis | None,
        key: bytes | None,
        max_bytes: int = APP_LOG_FILE_BYTES,
        kept: int = APP_LOG_FILES_KEPT,
    ) -> None:
        """Read new lines, append them to the Redis stream (held back while it is unreachable), rotate."""
        for log in self.files.values():
            # One stat per file and pump: most pumps of most instances find nothing new, and opening every
            # file each time cost a tenth of a core at 100 instances.
            size = log.size()
            if size is None:
                continue
            if size != log.offset:
                log.read()
            if log.pending and redis is not None:
                try:
                    report_streams.append_instance_log(
                        redis, self.node_id, self.instance_id, log.stream, log.pending, key=key
                    )
                    log.pending.clear()
                except RedisError as exc:
                    logger.debug("node %s instance %s: log lines held back: %s", self.node_id, self.instance_id, exc)
            if size >= max_bytes:
                log.rotate_if_big(max_bytes, kept)


RedisOf = Callable[[], Redis | None]
"""The agent's current Redis connection (None while it has none)."""
