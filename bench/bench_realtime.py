"""Where the time of one real-time call goes (issue 16): `echo hi` on 1 real agent through
`POST /api/tasks?wait=60`, split into stages by the timestamps each part of the path records anyway.

Usage: .venv/bin/python bench/bench_realtime.py [--runs 200] [--workers 2]

Stages, each from one recorded instant to the next (one machine, one clock):
  request in       client sends -> task row's created_at (HTTP, routing, auth, validation)
  record+enqueue   created_at -> the RQ job's enqueued_at (targets read, the transaction, signing, enqueue)
  pick-up          enqueued_at -> the job's started_at on the agent (Redis wakes the agent's worker)
  spawn            job started_at -> the host's started_at (job checked, its body read, fork and exec)
  run              host started_at -> host finished_at (the command runs, its pipes end, its exit is read)
  report+apply     host finished_at -> host updated_at (report published, rung, read by the duties, stored)
  settle           host updated_at -> task finished_at (the task's counters and status derived from its hosts)
  answer           task finished_at -> client has the answer (commit, the ?wait woken, the task read and sent)
SQLite only (it reads the manager's database file afterwards).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import redis
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import manager_and_agent, run_task  # noqa: E402
from common import machine, pct  # noqa: E402

from shared import keys  # noqa: E402
from tests import postgres_support  # noqa: E402
from tests.e2e.harness import Manager, isolated_env  # noqa: E402

STAGES = ("request in", "record+enqueue", "pick-up", "spawn", "run", "report+apply", "settle", "answer")


def _unix(value: str | datetime | None) -> float:
    """A naive UTC datetime (the database's, or RQ's) as a Unix time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert value is not None
    return value.replace(tzinfo=UTC).timestamp()


def _jobs_by_task(manager: Manager, node_id: str) -> dict[str, Job]:
    """The finished RUN_COMMAND jobs of ``node_id``'s queue, by the task id their description names."""
    conn = redis.Redis.from_url(manager.redis_url())
    registry = FinishedJobRegistry(keys.node_queue(node_id), connection=conn, serializer=JSONSerializer)
    ids = registry.get_job_ids()
    out = {}
    for job in Job.fetch_many(ids, connection=conn, serializer=JSONSerializer):
        if job is not None and job.description and job.description.startswith("run fleet task "):
            out[job.description.removeprefix("run fleet task ")] = job
    return out


def stages(manager: Manager, runs: list[tuple[str, float, float]]) -> dict[str, list[float]]:
    """Per stage, its duration in each run (seconds)."""
    db = sqlite3.connect(f"file:{manager.db_path}?mode=ro", uri=True)
    out: dict[str, list[float]] = {name: [] for name in STAGES}
    jobs: dict[str, Job] = {}
    for task_id, sent, answered in runs:
        created, pk, settled = db.execute(
            "SELECT created_at, id, finished_at FROM fleet_tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        node_id, started, finished, updated = db.execute(
            "SELECT node_id, started_at, finished_at, updated_at FROM task_hosts WHERE task_id = ?", (pk,)
        ).fetchone()
        if not jobs:
            jobs = _jobs_by_task(manager, node_id)
        job = jobs[task_id]
        instants = [
            sent,
            _unix(created),
            _unix(job.enqueued_at),
            _unix(job.started_at),
            _unix(started),
            _unix(finished),
            _unix(updated),
            _unix(settled),
            answered,
        ]
        for name, begin, end in zip(STAGES, instants, instants[1:], strict=False):
            out[name].append(end - begin)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if postgres_support.on_postgres():
        sys.exit("bench_realtime.py reads the manager's SQLite file: run it without CORRAL_TEST_DB=postgresql")
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        env = isolated_env(Path(tmp))
        with manager_and_agent(Path(tmp), env, workers=args.workers, warmup=10) as (manager, agent, session):
            runs = []
            for _ in range(args.runs):
                sent = time.time()
                elapsed, task = run_task(session, manager, ["real-000"])
                runs.append((task["task_id"], sent, sent + elapsed))
            by_stage = stages(manager, runs)
    total = [answered - sent for _, sent, answered in runs]
    print(
        f"echo hi on 1 real agent, {args.runs} runs, `?wait` call -> answer: p50 {pct(total, 0.5) * 1000:.2f} ms, "
        f"p99 {pct(total, 0.99) * 1000:.2f} ms"
    )
    print(f"{'stage':<16} {'p50 ms':>8} {'mean ms':>8} {'p99 ms':>8}")
    for name in STAGES:
        values = by_stage[name]
        print(
            f"{name:<16} {pct(values, 0.5) * 1000:8.2f} {statistics.mean(values) * 1000:8.2f} "
            f"{pct(values, 0.99) * 1000:8.2f}"
        )
    print(f"load average now {psutil.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
