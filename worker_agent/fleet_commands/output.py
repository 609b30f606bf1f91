"""The output of running fleet commands: one selector thread reads every pipe, each stream capped and split in lines."""

from __future__ import annotations

import codecs
import logging
import os
import selectors
import threading
from collections.abc import Callable
from typing import IO

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
"""Bytes read from a pipe at once."""

LINE_CHUNK_CHARS = 64 * 1024
"""A line longer than this goes to the live output in chunks of this size (OutputLineSchema allows it)."""

LINE_BATCH = 100
"""Lines read since the last wake-up after which the publisher is woken at once instead of at its next tick."""


class StreamCapture:
    """One stream (stdout or stderr) of one command: what is kept of it (capped) and its lines not yet sent."""

    def __init__(self, name: str, cap_bytes: int) -> None:
        self.name = name
        self.cap_bytes = cap_bytes
        self.kept_bytes = 0
        self.truncated = False
        self.closed = False
        self._chunks: list[bytes] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> int:
        """Take bytes read from the pipe (past the cap they are dropped); returns how many lines became pending."""
        with self._lock:
            if self.truncated or not data:
                return 0
            before = len(self._pending)
            room = self.cap_bytes - self.kept_bytes
            if len(data) > room:
                data = data[:room]
                self.truncated = True
            self.kept_bytes += len(data)
            self._chunks.append(data)
            self._split(self._decoder.decode(data, final=self.truncated))
            if self.truncated:
                self._end_partial()
            return len(self._pending) - before

    def close(self) -> None:
        """The pipe reached its end (or was given up): an unterminated last line becomes a line."""
        with self._lock:
            if not self.truncated:
                self._split(self._decoder.decode(b"", final=True))
            self._end_partial()
            self.closed = True

    def pending(self) -> list[str]:
        """A copy of the lines read but not yet sent to the live output, oldest first."""
        with self._lock:
            return list(self._pending)

    def sent(self, count: int) -> None:
        """Forget the first ``count`` pending lines: they reached the live output."""
        with self._lock:
            del self._pending[:count]

    def text(self) -> str:
        """Everything kept of the stream, decoded (a character cut by the cap becomes U+FFFD)."""
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", errors="replace")

    def _split(self, text: str) -> None:
        if not text:
            return
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._add(line)
        if len(self._partial) > LINE_CHUNK_CHARS:
            # A line that never ends (a progress bar, a binary blob) must not sit in memory unseen.
            cut = len(self._partial) - len(self._partial) % LINE_CHUNK_CHARS
            self._add(self._partial[:cut])
            self._partial = self._partial[cut:]

    def _add(self, line: str) -> None:
        for start in range(0, max(len(line), 1), LINE_CHUNK_CHARS):
            self._pending.append(line[start : start + LINE_CHUNK_CHARS])

    def _end_partial(self) -> None:
        if self._partial:
            self._add(self._partial)
            self._partial = ""


EXIT_MARK = "exit"
"""The selector's data of a process's pidfd (readable once the process has exited); a pipe's is its capture."""


class OutputReader:
    """One thread that reads the pipes of every running command and feeds their StreamCaptures.

    Pipes are handed over with ``add`` from any thread; only the reader thread touches the selector, woken
    through a self-pipe. ``wake`` is called after every LINE_BATCH lines. ``tick`` is
    called after every round and returns how long the next one may wait (None: until something happens);
    it never touches Redis, so a hung Redis never delays it. ``watch_exit`` wakes the thread when a process
    exits (a pidfd in the selector), so a command's exit is read as it happens.
    """

    def __init__(self, node_id: str, wake: Callable[[], None], tick: Callable[[], float | None]) -> None:
        self.node_id = node_id
        self._wake = wake
        self._tick = tick
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._to_add: list[tuple[IO[bytes], StreamCapture]] = []
        self._to_give_up: list[StreamCapture] = []
        self._to_watch: list[int] = []  # pidfds handed over, not registered yet
        self._pipes: dict[int, tuple[IO[bytes], StreamCapture]] = {}
        self._exits: set[int] = set()  # pidfds registered
        self._lines_since_wake = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="corral-command-output", daemon=True)

    def start(self) -> OutputReader:
        self._thread.start()
        return self

    def add(self, pipe: IO[bytes], capture: StreamCapture) -> None:
        """Read ``pipe`` into ``capture`` until its end."""
        with self._lock:
            self._to_add.append((pipe, capture))
        self._poke()

    def watch_exit(self, pid: int) -> None:
        """Wake the thread (then ``tick``) as soon as process ``pid`` exits.

        A command's pipes reach their end while it exits, a moment before it can be reaped: without this the
        reader looked again after EXIT_RECHECK_SECONDS, a delay on the path of every short command's report.
        Where pidfds are missing (Linux before 5.3) or the process is gone already, ``tick``'s recheck finds it.
        """
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return
        with self._lock:
            self._to_watch.append(fd)
        self._poke()

    def give_up(self, capture: StreamCapture) -> None:
        """Stop waiting for the end of ``capture``'s pipe (a process that escaped the kill still holds it)."""
        with self._lock:
            self._to_give_up.append(capture)
        self._poke()

    def close(self) -> None:
        """Stop the thread and close every pipe still open (their commands get SIGPIPE if they write)."""
        self._closing = True
        self._poke()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for pipe, _capture in list(self._pipes.values()):
            pipe.close()
        self._pipes.clear()
        for fd in self._exits:
            os.close(fd)
        self._exits.clear()
        with self._lock:
            for pipe, _capture in self._to_add:
                pipe.close()
            self._to_add.clear()
            for fd in self._to_watch:
                os.close(fd)
            self._to_watch.clear()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def _run(self) -> None:
        timeout: float | None = None
        while not self._closing:
            try:
                # No timeout when idle: an idle agent costs no CPU here; add/give_up/close wake the thread.
                ready = self._selector.select(timeout)
                for key, _mask in ready:
                    if key.data is None:
                        self._drain_wakeups()
                    elif key.data is EXIT_MARK:
                        self._exited(key.fd)
                    else:
                        self._read(key.fd)
                self._take_requests()
            except Exception:
                logger.exception("node %s: command output reader failed a round", self.node_id)
            try:
                timeout = self._tick()
            except Exception:
                logger.exception("node %s: command watch failed a round", self.node_id)
                timeout = 1.0

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_requests(self) -> None:
        with self._lock:
            to_add, self._to_add = self._to_add, []
            to_give_up, self._to_give_up = self._to_give_up, []
            to_watch, self._to_watch = self._to_watch, []
        for fd in to_watch:
            self._exits.add(fd)
            self._selector.register(fd, selectors.EVENT_READ, EXIT_MARK)
        for pipe, capture in to_add:
            os.set_blocking(pipe.fileno(), False)
            self._pipes[pipe.fileno()] = (pipe, capture)
            self._selector.register(pipe.fileno(), selectors.EVENT_READ, capture)
        for capture in to_give_up:
            for fd, (_pipe, known) in list(self._pipes.items()):
                if known is capture:
                    self._end(fd)

    def _exited(self, fd: int) -> None:
        """A watched process exited: forget its pidfd (``tick``, right after this round, reaps it)."""
        self._selector.unregister(fd)
        self._exits.discard(fd)
        os.close(fd)

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.warning("node %s: reading command output failed: %s", self.node_id, exc)
            data = b""
        if not data:
            self._end(fd)
            return
        _pipe, capture = self._pipes[fd]
        # Past the cap the bytes are dropped, but the pipe is still drained so the command never blocks.
        self._lines_since_wake += capture.feed(data)
        if self._lines_since_wake >= LINE_BATCH:
            self._lines_since_wake = 0
            self._wake()

    def _end(self, fd: int) -> None:
        pipe, capture = self._pipes.pop(fd)
        self._selector.unregister(fd)
        pipe.close()
        capture.close()
        # No wake-up here: the tick that follows this round wakes the publisher once the command's exit is read
        # (microseconds later, usually), and its last lines and its final report then go in one transaction.
