"""A write storm against a real manager: writer threads creating templates and fleet tasks as fast as they
can, each noting its answers. Used by bench/bench_writes.py (figures) and tests/faults/test_write_storm.py
(no request may fail because the database is busy)."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from dataclasses import dataclass, field

import requests

REQUEST_TIMEOUT = 60.0
"""Seconds a client waits for one answer; a request still unanswered then counts as an error."""


@dataclass
class Tally:
    """What one writer thread saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    failures: collections.Counter[tuple[str, int, str]] = field(default_factory=collections.Counter)
    templates: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


def writer(url: str, index: int, stop_at: float, tally: Tally) -> None:
    """Alternate a template and a fleet task until ``stop_at``, noting every answer."""
    session = requests.Session()
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        if n % 2:
            kind = "template"
            name = f"storm-{index}-{n}-{uuid.uuid4().hex[:6]}"
            path = "/api/task/task_group"
            body: dict[str, object] = {
                "name": name,
                "task_groups": [{"tasks": [{"name": "t", "config": {"command": "sleep 1"}}]}],
            }
        else:
            kind = "task"
            path = "/api/tasks"
            body = {"name": f"storm-{index}-{n}", "command": "true", "targets": ["*"], "timeout": 60, "start": True}
        t0 = time.perf_counter()
        try:
            answer = session.post(url + path, json=body, timeout=REQUEST_TIMEOUT)
        except requests.RequestException as exc:
            tally.failures[(kind, 0, type(exc).__name__)] += 1
            continue
        tally.latencies[kind].append(time.perf_counter() - t0)
        if answer.ok:
            if kind == "template":
                tally.templates.append(name)
            else:
                tally.tasks.append(answer.json()["task_id"])
        else:
            try:
                error = str(answer.json().get("error"))
            except ValueError:
                error = answer.text[:80]
            tally.failures[(kind, answer.status_code, error)] += 1


def storm(url: str, writers: int, seconds: float) -> tuple[list[Tally], float]:
    """Run ``writers`` threads for ``seconds``; returns their tallies and the wall time."""
    tallies = [Tally() for _ in range(writers)]
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=writer, args=(url, i, stop_at, tallies[i]), daemon=True) for i in range(writers)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + REQUEST_TIMEOUT + 10)
    return tallies, time.perf_counter() - t0
