"""What every bench script shares: percentiles, formatting, the machine line.

``CORRAL_TEST_DB=postgresql`` runs a bench's managers on PostgreSQL (tests/postgres_support.py: a database of
their own on the machine's server, dropped when the bench ends), as it does the tests.
"""

from __future__ import annotations

import atexit
import platform
import sys
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import postgres_support  # noqa: E402

if postgres_support.on_postgres():
    atexit.register(postgres_support.drop_created)


def pct(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def machine() -> str:
    """One line naming the machine a figure was measured on."""
    return (
        f"machine: {platform.platform()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"database {'PostgreSQL' if postgres_support.on_postgres() else 'SQLite'}"
    )
