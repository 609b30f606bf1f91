"""CPU per GET /api/task/node at 10,000 nodes, in process (issue 16: the node list's tail at 10,000 agents).

Usage: .venv/bin/python bench/bench_node_list_cpu.py [--nodes 10000] [--requests 200] [--changed 80] [--silent 0]
Run it from the root of the checkout to measure (it imports manager_api from the working directory).

A real redis-server of its own on a free port and a SQLite file: ``--nodes`` node rows and as many signed
heartbeat summaries written as agents write them (but for ``--silent`` nodes); then ``--requests`` GETs through
Flask's test client, with ``--changed`` nodes heartbeating again between two GETs (2,000 a second at 10,000 nodes
and a 5 s interval, the list answered every 40 ms). Prints this process's CPU per GET (what load barely moves),
the heartbeats written between GETs left out, and the garbage collections of the whole loop (heartbeats too).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

from manager_api import db  # noqa: E402
from manager_api.app import create_app  # noqa: E402
from manager_api.config import Settings  # noqa: E402
from manager_api.models import Node  # noqa: E402
from manager_api.services import job_keys  # noqa: E402
from shared import heartbeat  # noqa: E402
from tests.support import RedisServer  # noqa: E402


def beat(redis, node_id: str) -> None:  # type: ignore[no-untyped-def]
    figures = {"interval": 5.0, "cpu_usage_percent": random.uniform(0, 100), "memory_usage_percent": 40.0}
    heartbeat.write(redis, node_id, figures, key=job_keys.node_key(node_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--changed", type=int, default=80)
    parser.add_argument("--silent", type=int, default=0, help="nodes never heard from (their last_seen is read)")
    args = parser.parse_args()
    random.seed(16)
    server = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
            token = Path(tmp) / "join-token"
            token.write_text("secret\n")
            app = create_app(
                Settings(db_path=str(Path(tmp) / "corral.db"), redis_url=server.url, join_token_file=str(token))
            )
            redis = app.extensions["corral"].redis
            ids = [f"node-{i:05d}" for i in range(args.nodes)]
            now = datetime.now(UTC).replace(tzinfo=None)
            rows = [
                {
                    "id": n,
                    "hostname": f"host-{n}",
                    "ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                    "labels": '{"zone": "a"}' if i % 3 else "{}",
                    "registered_at": now,
                    "secret_digest": "x" * 64,
                }
                for i, n in enumerate(ids)
            ]
            with db.database.atomic():
                for start in range(0, len(rows), 500):
                    Node.insert_many(rows[start : start + 500]).execute()
            heard = ids[: args.nodes - args.silent]
            for n in heard:
                beat(redis, n)
            client = app.test_client()
            for _ in range(20):  # warm up: the caches of a worker that has been answering
                assert client.get("/api/task/node").status_code == 200
            cpu = []
            pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
            started = [0.0]

            def timed(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    started[0] = time.process_time()
                else:
                    pauses[info["generation"]].append(time.process_time() - started[0])

            gc.callbacks.append(timed)
            for _ in range(args.requests):
                for n in random.sample(heard, args.changed):
                    beat(redis, n)
                t0 = time.process_time()
                answer = client.get("/api/task/node")
                cpu.append(time.process_time() - t0)
                assert answer.status_code == 200
            gc.callbacks.remove(timed)
            cpu.sort()
            print(
                f"{args.nodes} nodes ({args.silent} never heard from), {args.changed} changed between GETs, "
                f"{args.requests} GETs "
                f"({len(answer.get_data()) / 2**20:.1f} MiB): CPU per GET mean {statistics.mean(cpu) * 1000:.2f} ms, "
                f"p50 {cpu[len(cpu) // 2] * 1000:.2f} ms, p99 {cpu[int(len(cpu) * 0.99) - 1] * 1000:.2f} ms; "
                "garbage collections (of generations 0/1/2) "
                + "/".join(f"{len(p)} ({sum(p) * 1000:.1f} ms)" for p in pauses.values())
                + f", {len(gc.get_objects())} objects tracked",
                flush=True,
            )
            redis.close()
            db.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
