"""Live streams end when the manager stops: an open console page never makes SIGTERM wait out gunicorn's
graceful timeout, and the manager still exits 0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import Manager, isolated_env

pytestmark = pytest.mark.e2e


def test_sigterm_with_live_pages_open_stops_at_once_and_exits_0(tmp_path: Path) -> None:
    manager = Manager(tmp_path, isolated_env(tmp_path))
    manager.start()
    streams = []
    try:
        with requests.Session() as browser:
            browser.get(manager.url + "/", timeout=10).raise_for_status()  # the session (no token: opens at once)
            for _ in range(3):
                stream = browser.get(manager.url + "/console/live/overview", stream=True, timeout=10)
                assert stream.status_code == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
                first = next(stream.iter_lines())
                assert first == b"retry: 1000"
                streams.append(stream)
            started = time.monotonic()
            code = manager.terminate(timeout=30)
            took = time.monotonic() - started
    finally:
        for stream in streams:
            stream.close()
        if manager.alive():
            manager.kill()
    print(f"\nmanager stopped {took:.1f} s after SIGTERM with 3 live pages open")
    assert code == 0, manager.output()
    assert took < 8.0, f"{took:.1f} s: the stop waited for the live streams\n{manager.output()}"
