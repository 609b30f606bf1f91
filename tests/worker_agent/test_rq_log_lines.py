"""RQ's INFO lines about each job are left out unless the agent logs at DEBUG (worker.RqPerJobLines)."""

from __future__ import annotations

import logging

from worker_agent.worker import RqPerJobLines


def record(function: str, level: int = logging.INFO) -> logging.LogRecord:
    made = logging.LogRecord("rq.worker", level, __file__, 1, "Worker %s: Job OK", ("w",), None, func=function)
    return made


def test_per_job_info_lines_are_dropped_and_the_workers_own_events_kept() -> None:
    root = logging.getLogger()
    level = root.level
    lines = RqPerJobLines()
    try:
        root.setLevel(logging.INFO)  # setLevel: isEnabledFor answers from a cache that it clears
        assert not lines.filter(record("_finalize_success"))
        assert not lines.filter(record("dequeue_job_and_maintain_ttl"))
        assert lines.filter(record("work"))  # "*** Listening on ...", started, stopping
        assert lines.filter(record("handle_job_success", logging.WARNING))
        root.setLevel(logging.DEBUG)
        assert lines.filter(record("_finalize_success"))
    finally:
        root.setLevel(level)
