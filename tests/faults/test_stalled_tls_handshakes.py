"""Fault: stalled TLS handshakes. The stalled-client guarantee (test_stalled_clients.py) over HTTPS: sockets that
connect and never start their handshake, or send half a ClientHello and wait, must not starve a TLS manager (the
worker's main loop drives handshakes non-blocking); each is closed by the manager once its request deadline
(REQUEST_READ_TIMEOUT) has passed, and new HTTPS clients are answered within PROBE_TIMEOUT throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from manager_api.http_server.worker import REQUEST_READ_TIMEOUT
from tests.e2e.harness import isolated_env
from tests.faults.test_stalled_clients import CLOSE_SLACK, PROBE_TIMEOUT, StalledClients
from tests.tls_support import TlsManager, make_tls_files

pytestmark = pytest.mark.e2e

HANDSHAKE_STALLS = (
    b"",  # connects and says nothing
    # The head of a TLS record holding a ClientHello of 512 bytes, and 4 of them: the handshake waits for the rest.
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
)
STALLED = 240


@pytest.fixture()
def manager(tmp_path: Path) -> Iterator[TlsManager]:
    manager = TlsManager(tmp_path, isolated_env(tmp_path), make_tls_files(tmp_path / "tls"))
    manager.start()
    yield manager
    manager.terminate()


def test_stalled_handshakes_do_not_starve_a_tls_manager(manager: TlsManager) -> None:
    stalled = StalledClients(manager.port, STALLED, HANDSHAKE_STALLS)
    started = time.monotonic()
    answered = 0
    try:
        while stalled.open_count:
            waited = time.monotonic() - started
            assert waited < REQUEST_READ_TIMEOUT + CLOSE_SLACK, f"{stalled.open_count} stalled sockets still open"
            for path in ("/healthz", "/api/task/node"):
                try:
                    assert manager.get(path, timeout=PROBE_TIMEOUT).status_code == 200
                except requests.Timeout:
                    pytest.fail(f"GET {path} over TLS not answered within {PROBE_TIMEOUT} s, {waited:.1f} s in")
                answered += 1
            stalled.reap()
        closed_after = time.monotonic() - started
    finally:
        stalled.close()
    print(f"\n{STALLED} stalled handshakes, all closed by the manager after {closed_after:.1f} s; {answered} answers")
    assert closed_after >= REQUEST_READ_TIMEOUT - 1.5, "stalled handshakes closed long before their deadline"
    assert answered > 16, "fewer answers than the threads a blocking handshake would have held"
    assert all(answer == b"" for answer in stalled.answers), "a socket without a handshake gets no HTTP answer"
    assert manager.healthy()
