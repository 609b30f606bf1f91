"""Every SQLite statement a process runs, one line each, in BENCH_SQL_TRACE_DIR/<pid>.sql (bench_call_cost.py),
while the file BENCH_SQL_TRACE_DIR/on exists (so that a phase timing CPU writes nothing).

Put this directory on PYTHONPATH with BENCH_SQL_TRACE_DIR set: Python imports ``sitecustomize`` at start, in
the manager's gunicorn workers and duties too (their PYTHONPATH keeps the caller's). Without the variable it does
nothing. A bench tool only: the lines hold the statements' values.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

_DIR = os.environ.get("BENCH_SQL_TRACE_DIR")

if _DIR:
    _connect = sqlite3.connect

    def _traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = _connect(*args, **kwargs)
        out = open(os.path.join(_DIR, f"{os.getpid()}.sql"), "a", buffering=1)  # noqa: SIM115 - the connection's
        switch = os.path.join(_DIR, "on")

        def trace(statement: str) -> None:
            if os.path.exists(switch):
                out.write(statement.replace("\n", " ") + "\n")

        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = _traced
