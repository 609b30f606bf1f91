"""How much of an HTTP/1.x request a buffer holds: the head, then the body its framing announces.

Fed the bytes of one connection as they arrive, a RequestFraming says whether the whole request is there yet, so
that the server (manager_api.http_server.worker) gives a thread only to a request it can answer without waiting on the
client. No sockets here; what is malformed is not judged, only recognised early enough to let gunicorn's parser
answer it (400, 413) from bytes already read.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable


class Verdict(enum.Enum):
    """What the bytes read so far allow."""

    WAIT = "wait"
    """The request is not all there: read on."""
    WHOLE = "whole"
    """Head and body are all buffered: answering never waits on the client, and the connection may be kept."""
    HAND_OVER = "hand over"
    """Enough to answer (a body over the limit, a malformed head or chunk): a thread answers from what is
    buffered, and the connection closes after the answer since where the next request starts is unknown."""


_CRLF = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
PARSER_READ_AHEAD = 1024
"""Bytes past what the manager reads that gunicorn's body reader may ask for (it reads at least 1 KiB at a time)."""
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
"""A chunk size as RFC 9112 writes it (hex digits only: Python's int(_, 16) would also take '0x', '+' and '_')."""


class RequestFraming:
    """The framing of one request, read incrementally: every byte is scanned about once however it trickles in."""

    def __init__(
        self,
        body_limit: int,
        head_limit: int,
        chunk_line_limit: int,
        limit_of_target: Callable[[bytes], int] | None = None,
    ) -> None:
        self.body_limit = body_limit
        """Largest body; once the request line is read, what ``limit_of_target`` says for its target."""
        self.limit_of_target = limit_of_target
        self.head_limit = head_limit
        self.chunk_line_limit = chunk_line_limit
        self.buffer = bytearray()
        self.wants_continue = False
        """The head asked for ``100 Continue`` (HTTP/1.1 with ``Expect: 100-continue``) before sending a body."""
        self._head_at = 0  # after the empty lines a client may send before its request line
        self._scanned = 0  # where the search for the end of the head resumes
        self._body_start: int | None = None
        self._body_end: int | None = None  # set for a Content-Length body (or none), None when chunked
        self._chunk_at = 0  # start of the chunk-size line, or of the chunk data when _chunk_size is set
        self._chunk_size: int | None = None
        self._decoded = 0  # chunk data bytes before _chunk_at

    @property
    def head_read(self) -> bool:
        """Whether the end of the head has been seen."""
        return self._body_start is not None

    def feed(self, data: bytes) -> Verdict:
        """Add ``data`` as read from the connection and say whether the request is complete."""
        self.buffer += data
        if self._body_start is None:
            verdict = self._read_head()
            if verdict is not Verdict.WHOLE:
                return verdict
        if self._body_end is not None:
            return Verdict.WHOLE if len(self.buffer) >= self._body_end else Verdict.WAIT
        return self._read_chunks()

    def _read_head(self) -> Verdict:
        while self.buffer.startswith(_CRLF, self._head_at):
            self._head_at += 2  # empty lines before a request line are allowed (RFC 9112 section 2.2)
        start = self._head_at
        end = self.buffer.find(_END_OF_HEAD, max(start, self._scanned - 3))
        if end < 0:
            self._scanned = len(self.buffer)
            # Past gunicorn's own limits its parser refuses the head (400) from what is buffered.
            return Verdict.HAND_OVER if len(self.buffer) > self.head_limit else Verdict.WAIT
        self._body_start = end + 4
        lines = bytes(self.buffer[start:end]).split(_CRLF)
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        http11 = lines[0].rstrip().endswith(b"HTTP/1.1")
        request_line = lines[0].split()
        if self.limit_of_target is not None and len(request_line) > 1:
            self.body_limit = self.limit_of_target(request_line[1])  # the join takes a smaller body
        lengths = fields.get(b"content-length", [])
        codings = b",".join(fields.get(b"transfer-encoding", []))
        if codings:
            if lengths or codings.rsplit(b",", 1)[-1].strip().lower() != b"chunked":
                return Verdict.HAND_OVER  # gunicorn answers 400 to either (RFC 9112 section 6.3)
            self._chunk_at = self._body_start
        elif lengths:
            if len(lengths) > 1 or not lengths[0].isdigit():
                return Verdict.HAND_OVER
            if int(lengths[0]) > self.body_limit:
                return Verdict.HAND_OVER  # the manager answers 413 without reading it
            self._body_end = self._body_start + int(lengths[0])
        else:
            self._body_end = self._body_start  # a request without either has no body
        expect = [value.lower() for value in fields.get(b"expect", [])]
        self.wants_continue = http11 and b"100-continue" in expect and self._body_end != self._body_start
        return Verdict.WHOLE

    def _read_chunks(self) -> Verdict:
        while True:
            if self._chunk_size is None:
                eol = self.buffer.find(_CRLF, self._chunk_at)
                if eol < 0:
                    too_long = len(self.buffer) - self._chunk_at > self.chunk_line_limit
                    return Verdict.HAND_OVER if too_long else Verdict.WAIT
                size_text = bytes(self.buffer[self._chunk_at : eol]).split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(size_text):
                    return Verdict.HAND_OVER
                size = int(size_text, 16)
                if size == 0:
                    # The last chunk: the body ends after the trailer section, which ends with an empty line.
                    if self.buffer.find(_END_OF_HEAD, eol) >= 0:
                        return Verdict.WHOLE
                    too_long = len(self.buffer) - eol > self.head_limit
                    return Verdict.HAND_OVER if too_long else Verdict.WAIT
                self._chunk_at, self._chunk_size = eol + 2, size
            available = len(self.buffer) - self._chunk_at
            if self._decoded + min(available, self._chunk_size) > self.body_limit + PARSER_READ_AHEAD:
                # Over the limit with the bytes to prove it, and all that gunicorn reads for the manager, which reads
                # one byte past the limit and answers 413: no read of the thread waits on the client.
                return Verdict.HAND_OVER
            if available < self._chunk_size + 2:
                return Verdict.WAIT
            self._decoded += self._chunk_size
            self._chunk_at += self._chunk_size + 2
            self._chunk_size = None
