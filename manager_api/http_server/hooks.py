"""gunicorn's server hooks for the manager, loaded with ``--config python:manager_api.http_server.hooks``."""

from __future__ import annotations

from typing import Any

from manager_api.observability import multiprocess


def child_exit(_server: Any, worker: Any) -> None:
    """A worker ended: prometheus_client forgets its live gauges (its counters stay in the sums)."""
    multiprocess.process_ended(worker.pid)
