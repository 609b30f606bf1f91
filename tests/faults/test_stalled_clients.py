"""Fault: stalled clients (issue 10, item 6). Sockets that send half a request and wait must not starve the API:
with 200 of them stalled in their request line or head and 40 more in their body, a real manager (gunicorn, 2
workers x 8 threads, which 16 such sockets used to hold for good) keeps answering /healthz and GET /api/task/node
within PROBE_TIMEOUT each for the whole stall, and closes every stalled socket itself once its request deadline
(manager_api.http_server.worker.REQUEST_READ_TIMEOUT) has passed."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from manager_api.http_server.worker import REQUEST_READ_TIMEOUT
from tests.e2e.harness import Manager, isolated_env

pytestmark = pytest.mark.e2e

STALLS = (
    # Half a request line, half a head: a thread used to wait for the rest of the head.
    b"GET /api/task/no",
    b"GET /healthz HTTP/1.1\r\nHost: corral\r\nUser-Agent: stal",
    # A whole head and part of its body, with a length or chunked: a thread used to wait for the rest of the body.
    b"POST /api/task/task_group HTTP/1.1\r\nHost: corral\r\nContent-Length: 1000\r\n\r\n" + b'{"name": "st',
    b"POST /api/task/task_group HTTP/1.1\r\nHost: corral\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n" + b'{"na',
)
HEAD_STALLS = 200
BODY_STALLS = 40
PROBE_TIMEOUT = 2.0
"""Longest any probe may take during the stall; before the fix every probe timed out."""
CLOSE_SLACK = 5.0
"""Time past the request deadline for the manager to close every stalled socket (it sweeps once a second)."""


class StalledClients:
    """``count`` sockets to ``port`` that send the start of a request (STALLS, in turn) and then wait."""

    def __init__(self, port: int, count: int, stalls: tuple[bytes, ...] = STALLS) -> None:
        self.port = port
        self.stalls = stalls
        self.selector = selectors.DefaultSelector()
        self.closed = 0
        """How many the manager has closed so far."""
        self.answers: list[bytes] = []
        """What the manager sent before closing each (a 408, or nothing)."""
        for i in range(count):
            self.open(self.stalls[i % len(self.stalls)])

    def open(self, stall: bytes) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(stall)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ, [stall, b""])

    @property
    def open_count(self) -> int:
        return len(self.selector.get_map())

    def reap(self, reopen: bool = False) -> int:
        """Count the sockets the manager closed since the last call (reopening them if ``reopen``)."""
        found = 0
        for key, _ in self.selector.select(timeout=0):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            stall, answer = key.data
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                key.data[1] = answer + data
                continue
            self.selector.unregister(sock)
            sock.close()
            self.answers.append(answer)
            found += 1
            if reopen:
                self.open(stall)
        self.closed += found
        return found

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


def probe(url: str) -> float:
    """Seconds one GET of ``url`` took, on a new connection as a new client's would be; fails unless 200."""
    start = time.perf_counter()
    answer = requests.get(url, timeout=PROBE_TIMEOUT)
    assert answer.status_code == 200, f"{url}: {answer.status_code} {answer.text[:200]}"
    return time.perf_counter() - start


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.fixture()
def manager(tmp_path: Path) -> Iterator[Manager]:
    manager = Manager(tmp_path, isolated_env(tmp_path))
    manager.start()
    yield manager
    manager.terminate()


def test_stalled_clients_do_not_starve_the_api(manager: Manager) -> None:
    paths = ("/healthz", "/api/task/node")
    stalled = StalledClients(manager.port, HEAD_STALLS)
    body_stalls = StalledClients(manager.port, BODY_STALLS, STALLS[2:])
    started = time.monotonic()
    samples: dict[str, list[float]] = {path: [] for path in paths}
    try:
        while stalled.open_count or body_stalls.open_count:
            waited = time.monotonic() - started
            assert waited < REQUEST_READ_TIMEOUT + CLOSE_SLACK, (
                f"{stalled.open_count + body_stalls.open_count} stalled sockets still open after {waited:.1f} s"
            )
            for path in paths:
                try:
                    samples[path].append(probe(manager.url + path))
                except requests.Timeout:
                    pytest.fail(f"GET {path} not answered within {PROBE_TIMEOUT} s, {waited:.1f} s into the stall")
            stalled.reap()
            body_stalls.reap()
        closed_after = time.monotonic() - started
    finally:
        stalled.close()
        body_stalls.close()
    print(f"\n{HEAD_STALLS} + {BODY_STALLS} stalled sockets, all closed by the manager after {closed_after:.1f} s")
    for path, taken in samples.items():
        print(
            f"GET {path}: {len(taken)} answers during the stall, p50 {percentile(taken, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(taken, 0.99) * 1000:.1f} ms, max {max(taken) * 1000:.1f} ms"
        )
    assert closed_after >= REQUEST_READ_TIMEOUT - 1.5, "stalled sockets closed long before their deadline"
    answers = stalled.answers + body_stalls.answers
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), {bytes(a[:40]) for a in answers}
    assert manager.healthy()
