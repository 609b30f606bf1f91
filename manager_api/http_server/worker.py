"""The manager's gunicorn worker: gthread, except that no thread ever waits for a client to finish sending.

gunicorn's gthread worker hands a new connection to a thread as soon as it is readable, and the thread reads the
request with blocking reads: a client that sends half a head (or a head and half a body) and waits holds the
thread, and 2 workers x 8 threads are starved by 16 such sockets. Here the main loop of each worker reads every
request into a buffer, non-blocking, until its framing (manager_api.http_server.framing) says it is all there, and only
then gives the connection to a thread, whose parser reads from that buffer. A request not complete within
REQUEST_READ_TIMEOUT is answered 408 and closed. Kept-alive connections wait in the main loop as in gthread, and
their next request is read the same way. The connections of each worker, these included, are capped by gunicorn's
``worker_connections``; past it the worker stops accepting until some close.

With gunicorn's certfile/keyfile (the manager's --tls-cert/--tls-key) each connection is wrapped at accept without
its handshake, and the main loop drives the handshake non-blocking under the same REQUEST_READ_TIMEOUT as the
request: a client that connects and never finishes its handshake holds no thread either. HTTP/1.x only (no HTTP/2).
Use it with ``gunicorn --worker-class manager_api.http_server.worker.BufferingThreadWorker``.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import ssl
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn import http as gunicorn_http
from gunicorn import sock as gunicorn_sock
from gunicorn.http.body import DEFAULT_MAX_CHUNK_SIZE_LINE
from gunicorn.workers.gthread import TConn, ThreadWorker

from manager_api.body_limits import target_limit
from manager_api.config import Settings
from manager_api.http_server.framing import RequestFraming, Verdict
from manager_api.stopping import STOPPING

logger = logging.getLogger(__name__)

REQUEST_READ_TIMEOUT = 10.0
"""Seconds a client has to send a whole request (head and body), from its connection or its first byte after a
kept-alive answer; also the longest a thread waits on a read or write of a connection it was given."""
LINGER_TIMEOUT = 2.0
"""Seconds a closing connection is drained, so that unread request bytes do not turn the close into a reset."""
LINGER_MAX_BYTES = 64 * 1024
"""Most bytes drained from a closing connection."""
READ_SIZE = 64 * 1024
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BufferedConn(TConn):
    """A gthread connection whose request arrives read already, and whose graceful close never blocks."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any, linger: Callable[[Any], None]):
        super().__init__(cfg, sock, client, server)
        # A backstop, for a read the framing did not foresee and for a client that does not read its answer: a
        # thread would wait on the blocking socket for good. Kept by the kernel, since a timeout set through Python
        # (settimeout) makes every recv and send of the blocking socket poll first, a fifth off keep-alive throughput.
        timeval = struct.pack("ll", int(REQUEST_READ_TIMEOUT), 0)  # struct timeval (Linux)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.linger = linger
        self.framing: RequestFraming | None = None
        """The request being read by the main loop; None while a thread serves the connection."""
        self.read_deadline = 0.0
        self.request_bytes = b""
        """The request read by the main loop, for the parser to read before the socket."""
        self.whole_request = False
        """Whether the request handed to the thread was read whole (else the connection closes after it)."""
        self.handshaking = isinstance(sock, ssl.SSLSocket)
        """Whether the TLS handshake, driven by the main loop, is still to finish."""

    def init(self) -> None:
        """Make the parser (first request only) and give it the bytes read; runs in the thread, on every request."""
        if self.cfg.is_ssl and not self.initialized:  # type: ignore[has-type]  # gthread is untyped
            # The socket is wrapped and shaken hands already (main loop): gthread's init would wrap it again.
            self.initialized = True
            self.sock.setblocking(True)
            if self.parser is None:  # type: ignore[has-type]
                self.parser = gunicorn_http.get_parser(self.cfg, self.sock, self.client)
        super().init()
        self.parser.unreader.unread(self.request_bytes)
        self.request_bytes = b""

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.linger(self)  # gthread's graceful close drains for up to 2 s in the main loop, blocking it
        else:
            super().close()


class BufferingThreadWorker(ThreadWorker):
    """gthread whose main loop reads each request whole before a thread serves it (see the module docstring)."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        STOPPING.set()  # long answers (live streams, follows) end now: the graceful stop need not wait for them
        super().handle_exit(sig, frame)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The connections whose request is being read, and whether each is registered with the poller. Insertion
        # order is deadline order (every connection gets the same timeout), so expiry looks at the front.
        self.reading: dict[BufferedConn, bool] = {}
        self.lingering: dict[socket.socket, tuple[float, list[int]]] = {}
        self.stop_deadline: float | None = None
        self.tls: ssl.SSLContext | None = None
        # The launcher hands its settings to the workers as CORRAL_* variables (manager --max-body-bytes).
        self.max_body_bytes = Settings.from_env().max_body_bytes
        self.limit_of_target = partial(target_limit, max_body_bytes=self.max_body_bytes)

    def init_process(self) -> None:
        if self.cfg.http2_cleartext != "off" or "h2" in (self.cfg.http_protocols or []):
            # Reading ahead would take an HTTP/2 preface from under gunicorn.
            raise RuntimeError("BufferingThreadWorker serves HTTP/1.x only (no HTTP/2)")
        if self.cfg.is_ssl:
            self.tls = gunicorn_sock.ssl_context(self.cfg)  # once per worker: loading the key per connection is slow
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """gthread's accept, with a BufferedConn whose request is read before it meets a thread."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        if self.tls is not None:
            try:
                client_sock = self.tls.wrap_socket(client_sock, server_side=True, do_handshake_on_connect=False)
            except OSError:  # gone already
                client_sock.close()
                return
        self.nr_conns += 1
        conn = BufferedConn(self.cfg, client_sock, client_addr, listener.getsockname(), self.linger)
        self.enqueue_req(conn)

    def enqueue_req(self, conn: BufferedConn) -> None:
        """Where gthread gives a connection to a thread (new, readable after keep-alive, or holding pipelined
        bytes), start reading its request instead."""
        conn.sock.setblocking(False)
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.framing = RequestFraming(
            self.max_body_bytes,
            # gunicorn's own bound on a head, so that anything past it is refused by its parser, not cut here.
            self.cfg.limit_request_line + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2) + 4,
            self.cfg.limit_request_field_size or DEFAULT_MAX_CHUNK_SIZE_LINE,
            self.limit_of_target,
        )
        conn.read_deadline = time.monotonic() + REQUEST_READ_TIMEOUT
        self.reading[conn] = False
        if conn.handshaking:
            self.handshake(conn)
            return
        # A kept-alive connection is here because it is readable, and a short request usually comes in one
        # segment: read now, and register with the poller only what is not complete.
        if self.advance(conn, leftover or self.receive(conn.sock)):
            self.watch(conn, selectors.EVENT_READ, partial(self.on_request_bytes, conn))

    def handshake(self, conn: BufferedConn, _sock: socket.socket | None = None) -> None:
        """One step of the TLS handshake of ``conn``; once done, its request is read as a plain one's. A handshake
        that does not finish is closed by murder_pending at the request's deadline, like a stalled request."""
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.watch(conn, selectors.EVENT_READ, partial(self.handshake, conn))
        except ssl.SSLWantWriteError:
            return self.watch(conn, selectors.EVENT_WRITE, partial(self.handshake, conn))
        except OSError as exc:  # plain HTTP on the TLS port, a client refusing our certificate, a reset
            logger.debug("TLS handshake with %s failed: %s", conn.client, exc)
            self.stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return None
        conn.handshaking = False
        if self.advance(conn, self.receive(conn.sock)):
            self.watch(conn, selectors.EVENT_READ, partial(self.on_request_bytes, conn))
        return None

    def watch(self, conn: BufferedConn, events: int, callback: Callable[[socket.socket], None]) -> None:
        """Have the poller call ``callback`` on ``events`` of a connection being read (registered or not yet)."""
        if self.reading[conn]:
            self.poller.modify(conn.sock, events, callback)
        else:
            self.poller.register(conn.sock, events, callback)
            self.reading[conn] = True

    @staticmethod
    def receive(sock: socket.socket) -> bytes | None:
        """What the client sent, b"" when it is gone, None when it has sent nothing new."""
        try:
            data = sock.recv(READ_SIZE)
            # TLS: bytes decrypted already wait in the SSL object, where the poller cannot see them.
            while isinstance(sock, ssl.SSLSocket) and data and sock.pending():
                data += sock.recv(READ_SIZE)
            return data
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:
            return b""  # reset (or a TLS error): as gone

    def on_request_bytes(self, conn: BufferedConn, _sock: socket.socket) -> None:
        self.advance(conn, self.receive(conn.sock))

    def advance(self, conn: BufferedConn, data: bytes | None) -> bool:
        """Take ``data`` into the request of ``conn`` and hand the request over once complete; whether it is
        still being read."""
        assert conn.framing is not None
        if data is None:
            return True
        if not data:  # the client went away before its request was complete
            self.stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return False
        verdict = conn.framing.feed(data)
        if verdict is Verdict.WAIT:
            if conn.framing.wants_continue:
                conn.framing.wants_continue = False
                # The client waits for this before sending its body. gunicorn sends one too once a thread has the
                # request; a client must accept any number of 1xx answers (RFC 9110 section 15.2).
                self.send_quietly(conn.sock, CONTINUE)
            return True
        conn.request_bytes = bytes(conn.framing.buffer)
        conn.whole_request = verdict is Verdict.WHOLE
        conn.data_ready = True  # gthread must not wait for the socket to be readable: the bytes are read
        self.stop_reading(conn)
        super().enqueue_req(conn)
        return False

    def stop_reading(self, conn: BufferedConn) -> None:
        conn.framing = None
        if self.reading.pop(conn):
            self.poller.unregister(conn.sock)

    def _keepalive_after(self, conn: BufferedConn, keepalive: bool) -> bool:
        # A request that was not read whole (too large, malformed) leaves unknown bytes behind: close, never
        # drain them in a thread. One read whole is in memory, so a body the route did not read drains from
        # there whatever its size (up to --max-body-bytes): gunicorn's own drain gives up past 64 KiB and closed
        # the connection it had just answered "keep-alive" on, and the client's next request on it failed.
        if not (keepalive and conn.whole_request):
            return False
        return bool(conn.parser.finish_body())

    def murder_pending(self) -> None:
        """gthread's expiry of connections waiting for data, plus the requests not read in time and lingering
        closes; a stopping worker keeps neither past gthread's keep-alive linger."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and self.stop_deadline is None:
            self.stop_deadline = now + 2.0
        expired = now if self.stop_deadline is None or now < self.stop_deadline else float("inf")
        timed_out = 0
        for conn in list(self.reading):
            if conn.read_deadline > expired:
                break
            assert conn.framing is not None
            if conn.framing.buffer:  # a connection that never sent a byte is just closed, as an idle one
                self.send_quietly(conn.sock, TIMED_OUT)
                timed_out += 1
            self.stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
        if timed_out:
            # One line per sweep, not per client: a thousand stalled sockets must not flood the log.
            logger.warning("%d requests not received within %.0f s: answered 408", timed_out, REQUEST_READ_TIMEOUT)
        for sock, (deadline, _drained) in list(self.lingering.items()):
            if deadline <= expired:
                self.end_linger(sock)

    def linger(self, conn: BufferedConn) -> None:
        """Close ``conn`` gracefully (RFC 9112 section 9.6) from the main loop, never blocking it."""
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
        except OSError:
            sock.close()
            return
        self.lingering[sock] = (time.monotonic() + LINGER_TIMEOUT, [0])
        self.poller.register(sock, selectors.EVENT_READ, self.on_linger_bytes)

    def on_linger_bytes(self, sock: socket.socket) -> None:
        _deadline, drained = self.lingering[sock]
        data = self.receive(sock)
        if data is None:
            return
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_MAX_BYTES:
            self.end_linger(sock)

    def end_linger(self, sock: socket.socket) -> None:
        del self.lingering[sock]
        self.poller.unregister(sock)
        sock.close()

    @staticmethod
    def send_quietly(sock: socket.socket, data: bytes) -> None:
        """Send a few bytes if the socket takes them now; a client that cannot take them gets nothing."""
        try:
            sock.send(data)
        except OSError:
            pass
