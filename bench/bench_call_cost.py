"""What one real-time call costs the manager's web side, in figures a busy machine does not move (issue 16).

Usage: .venv/bin/python bench/bench_call_cost.py [--runs 300] [--monitor-runs 20] [--source DIR] [--pairs 1]

`echo hi` on 1 real agent through `POST /api/tasks?wait=60`, a manager of one gunicorn worker. For each call:

- CPU: the gunicorn worker's user+system time (and the duties', Redis's, the agent's) over ``--runs`` calls,
  divided by the runs;
- Redis commands: ``MONITOR`` over ``--monitor-runs`` calls, each command counted for the process whose
  connection sent it (its client port, through psutil), listed by name for the worker;
- SQL statements: every statement the worker runs over ``--monitor-runs`` calls (bench/sql_trace, SQLite only).

``--source DIR`` runs the manager and the agent from another checkout (a `git worktree add --detach` of the commit
before); with ``--compare DIR`` each pair runs DIR then this tree, ``--pairs`` times, in one sitting.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import cpu_seconds, manager_and_agent, run_task  # noqa: E402
from common import machine, pct  # noqa: E402

from tests import postgres_support  # noqa: E402
from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402

SHOW_COMMANDS = "--show-commands" in sys.argv
TRACE_DIR = Path(__file__).resolve().parent / "sql_trace"


def _tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def roles(manager: Manager, agent: Agent) -> dict[str, list[int]]:
    """The pids of the gunicorn workers, the duties, the manager's Redis and the agent's tree."""
    out: dict[str, list[int]] = collections.defaultdict(list)
    for proc in _tree(manager.pid):
        line = " ".join(proc.cmdline())
        if "redis-server" in line:
            out["redis"].append(proc.pid)
        elif "gunicorn" in line:
            parent = proc.parent()
            if parent is not None and "gunicorn" in " ".join(parent.cmdline()):
                out["worker"].append(proc.pid)
        else:
            out["launcher+duties"].append(proc.pid)
    out["agent"] = [p.pid for p in _tree(agent.pid)]
    return out


def _ports(pids: dict[str, list[int]], redis_port: int) -> dict[int, str]:
    """Client port -> role, for every connection to the manager's Redis."""
    owner = {pid: role for role, group in pids.items() for pid in group}
    out = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.raddr and conn.raddr.port == redis_port and conn.pid in owner:
            out[conn.laddr.port] = owner[conn.pid]
    return out


def measure(source: Path | None, runs: int, monitor_runs: int) -> dict[str, Any]:
    label = str(source) if source is not None else "this tree"
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp, contextlib.chdir(tmp):
        # Out of any checkout: `python -m gunicorn` puts its working directory first on sys.path, before PYTHONPATH.
        env = isolated_env(Path(tmp))
        trace = Path(tmp) / "sql"
        trace.mkdir()
        env["BENCH_SQL_TRACE_DIR"] = str(trace)
        env["PYTHONPATH"] = ":".join(str(p) for p in (source, TRACE_DIR) if p is not None)
        with manager_and_agent(Path(tmp), env, workers=1, warmup=20) as (manager, agent, session):
            pids = roles(manager, agent)
            before = {role: cpu_seconds(group) for role, group in pids.items()}
            latencies = [run_task(session, manager, ["real-000"])[0] for _ in range(runs)]
            after = {role: cpu_seconds(group) for role, group in pids.items()}
            cpu_ms = {role: (after[role] - before[role]) * 1000 / runs for role in pids}

            url = manager.redis_url()
            redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
            seen: list[tuple[int, str]] = []  # (client port, command)
            monitor = redis.Redis.from_url(url).monitor()
            stop = threading.Event()

            def collect() -> None:
                with monitor as m:
                    for command in m.listen():
                        port = str(command.get("client_port") or "0")
                        seen.append((int(port) if port.isdigit() else 0, str(command.get("command", ""))))
                        if stop.is_set():
                            return

            thread = threading.Thread(target=collect, daemon=True)
            thread.start()
            time.sleep(0.2)  # noqa: TID251 - MONITOR's subscription is up before the calls (a bench, not a test)
            offsets = {p.name: p.stat().st_size for p in trace.glob("*.sql")}
            (trace / "on").touch()
            for _ in range(monitor_runs):
                run_task(session, manager, ["real-000"])
            (trace / "on").unlink()
            ports = _ports(pids, redis_port)
            stop.set()
            redis.Redis.from_url(url).ping()  # one more command, so that the listener sees stop
            thread.join(5)
            redis_by_role: collections.Counter[str] = collections.Counter()
            worker_commands: collections.Counter[str] = collections.Counter()
            worker_lines = []
            for port, command in seen:
                role = ports.get(port, "other") if port else "inside scripts"
                name = command.split(" ", 1)[0].upper()
                if role == "worker":
                    worker_lines.append(command[:110])
                redis_by_role[role] += 1
                if role == "worker":
                    worker_commands[name] += 1
            sql_statements: collections.Counter[str] = collections.Counter()
            for path in trace.glob("*.sql"):
                if int(path.stem) not in pids["worker"]:
                    continue
                with open(path) as f:
                    f.seek(offsets.get(path.name, 0))
                    for statement in f:
                        sql_statements[" ".join(statement.split()[:4])] += 1
    return {
        "label": label,
        "p50": pct(latencies, 0.5) * 1000,
        "mean": statistics.mean(latencies) * 1000,
        "cpu_ms": cpu_ms,
        "redis": {role: count / monitor_runs for role, count in redis_by_role.items()},
        "worker_commands": {name: count / monitor_runs for name, count in worker_commands.most_common()},
        "worker_lines": worker_lines[-int(len(worker_lines) / max(1, monitor_runs)) :],
        "sql": sum(sql_statements.values()) / monitor_runs,
        "sql_kinds": {kind: count / monitor_runs for kind, count in sql_statements.most_common()},
    }


def show(result: dict[str, Any]) -> None:
    print(f"== {result['label']}")
    print(f"  wall p50 {result['p50']:.2f} ms, mean {result['mean']:.2f} ms (load-dependent)")
    print("  CPU ms per call: " + ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(result["cpu_ms"].items())))
    print("  Redis commands per call: " + ", ".join(f"{r} {n:.1f}" for r, n in sorted(result["redis"].items())))
    print("  worker's commands: " + ", ".join(f"{c} {n:.1f}" for c, n in result["worker_commands"].items()))
    if SHOW_COMMANDS:
        for line in result["worker_lines"]:
            print("    " + line)
    print(f"  worker's SQL statements per call: {result['sql']:.1f}")
    for kind, count in result["sql_kinds"].items():
        print(f"    {count:4.1f}  {kind}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--monitor-runs", type=int, default=20)
    parser.add_argument("--source", type=Path, help="run the manager and agent from this checkout")
    parser.add_argument("--compare", type=Path, help="alternate this checkout (first) with this tree")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--show-commands", action="store_true", help="the worker's Redis commands of one call")
    args = parser.parse_args()
    if postgres_support.on_postgres():
        sys.exit("bench_call_cost.py traces SQLite statements: run it without CORRAL_TEST_DB=postgresql")
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}", flush=True)
    if args.compare is None:
        show(measure(args.source, args.runs, args.monitor_runs))
        return
    for _ in range(args.pairs):
        for source in (args.compare, None):
            show(measure(source, args.runs, args.monitor_runs))
            print(f"  load average now {psutil.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
