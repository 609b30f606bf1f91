"""What every bench script shares: percentiles, formatting, the machine line.

``CORRAL_TEST_DB=postgresql`` runs a bench's managers on PostgreSQL (tests/postgres_support.py: a database of
their own on the machine's server, dropped when the bench ends), as it does the tests.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import platform
import statistics
import sys
import time
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
    """One line naming the machine a figure was measured on, with its speed now (speed_ms); the script prints the
    speed again as it ends, since this VM's speed can change within the minute."""
    global _end_speed_registered
    if not _end_speed_registered:
        atexit.register(lambda: print(f"speed at the end {speed_ms():.1f} ms", flush=True))
        _end_speed_registered = True
    return (
        f"machine: {platform.platform()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"database {'PostgreSQL' if postgres_support.on_postgres() else 'SQLite'}, "
        f"speed {speed_ms():.1f} ms (CPU of a fixed workload, lower is faster)"
    )


_end_speed_registered = False

SPEED_DOCUMENT = {"node": "n" * 32, "task": "t" * 36, "stdout": "hi\n" * 40, "exit": 0, "labels": {"zone": "a"}}


def speed_ms(rounds: int = 5) -> float:
    """CPU milliseconds of a fixed piece of pure-Python work, the median of ``rounds``: JSON encoding and decoding,
    hashing, dict and string work, as corral's processes do per message. This VM's speed moves (issue 16: the same
    code's CPU per host 1.45x apart on two days, and this workload flips between about 27 and 42 ms within a
    minute): a figure taken while it was slow says so. CPU time: other work moves it only by sharing this process's
    vCPU (a busy loop on the same vCPU made it 1.8x, one on the other vCPU did not)."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for i in range(2000):
            body = json.dumps({**SPEED_DOCUMENT, "seq": i}, sort_keys=True)
            decoded = json.loads(body)
            hashlib.sha256(body.encode()).hexdigest()
            ",".join(f"{key}={value}" for key, value in decoded.items() if key != "stdout")
        samples.append((time.process_time() - started) * 1000)
    return statistics.median(samples)
