"""Stalled clients: latency of /healthz and GET /api/task/node for a new client while N sockets hold half a request
(kept stalled: each one the manager closes is opened again), and plain GET throughput with none.

Runs a real `manager` (gunicorn, private Redis) on this machine.
Usage: .venv/bin/python bench/bench_stalled.py [--stalled 0,48,1000] [--requests 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Manager, isolated_env  # noqa: E402
from tests.faults.test_stalled_clients import StalledClients  # noqa: E402

PATHS = ("/healthz", "/api/task/node")
TIMEOUT = 5.0
"""Seconds a probe may take; one that times out counts as this long."""
GIVE_UP = 5
"""Timeouts after which a series stops (before the fix, every probe timed out)."""


def probe_series(manager: Manager, path: str, count: int, stalled: StalledClients | None) -> tuple[list[float], int]:
    """``count`` GETs of ``path``, each on a new connection; their durations and how many timed out."""
    samples: list[float] = []
    timeouts = 0
    for _ in range(count):
        start = time.perf_counter()
        try:
            requests.get(manager.url + path, timeout=TIMEOUT).raise_for_status()
            samples.append(time.perf_counter() - start)
        except requests.Timeout:
            samples.append(TIMEOUT)
            timeouts += 1
            if timeouts >= GIVE_UP:
                break
        if stalled is not None:
            stalled.reap(reopen=True)
    return samples, timeouts


def throughput(manager: Manager, seconds: float, clients: int) -> float:
    """GET /healthz per second from ``clients`` keep-alive clients."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                session.get(manager.url + "/healthz", timeout=TIMEOUT).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", default="0,48,1000", help="comma-separated numbers of stalled sockets")
    parser.add_argument("--requests", type=int, default=200, help="GETs per path and number of stalled sockets")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the throughput run")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 stalled sockets and the probes
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manager = Manager(workdir, isolated_env(workdir))
        manager.start()
        try:
            for clients in (1, 8):
                print(
                    f"no stalled sockets: GET /healthz, {clients} keep-alive clients: "
                    f"{throughput(manager, args.seconds, clients):.0f} requests/s"
                )
            for count in (int(n) for n in args.stalled.split(",")):
                stalled = StalledClients(manager.port, count) if count else None
                try:
                    for path in PATHS:
                        samples, timeouts = probe_series(manager, path, args.requests, stalled)
                        print(
                            f"{count:5d} stalled: GET {path:15s} p50 {ms(pct(samples, 0.5)):>10s}  "
                            f"p99 {ms(pct(samples, 0.99)):>10s}  timeouts ({TIMEOUT:.0f} s) {timeouts}/{len(samples)}"
                        )
                finally:
                    if stalled is not None:
                        stalled.close()
        finally:
            manager.terminate()


if __name__ == "__main__":
    main()
