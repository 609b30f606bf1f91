"""What one fleet command job costs a real agent (issue 16): `echo hi` through `POST /api/tasks?wait=60` on 1 real
agent, the agent's CPU and its Redis commands and round trips per job, figures that do not depend on the load of
the machine the way wall-clock latency does.

Usage: .venv/bin/python bench/bench_agent_job.py [--jobs 300] [--monitor 20] [--strace 100]

- CPU: the agent's process tree (its own user+system time and that of its reaped children, the `sh -c` of each
  command) before and after ``--jobs`` tasks, per job.
- Redis commands: MONITOR on the manager's Redis during ``--monitor`` tasks, the commands sent by the agent's
  connections (its node's Redis user), per job and by name.
- Round trips: ``strace -c`` on the agent during ``--strace`` tasks, its sendto and recvfrom calls per job (each
  request or pipeline to Redis is one sendto; strace slows the agent, so CPU is measured in a window without it).

Another checkout (the code before a change): run this file with PYTHONPATH=<checkout> in the environment, which the
manager and agent processes inherit.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import manager_and_agent, run_task  # noqa: E402
from common import machine  # noqa: E402

from tests.e2e.harness import Manager, isolated_env  # noqa: E402


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its reaped children (user and system)."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def monitor_agent_commands(
    manager: Manager, node_user: str, work: Callable[[], object], show: bool = False
) -> collections.Counter[str]:
    """The commands the connections of users named ``node_user``... sent while ``work()`` ran, by name."""
    conn = redis.Redis.from_url(manager.redis_url())
    counts: collections.Counter[str] = collections.Counter()
    ready = threading.Event()

    def listen() -> None:
        with conn.monitor() as m:
            ready.set()
            users: dict[str, str] = {}  # client address -> its user
            for command in m.listen():
                if "corral-bench-end" in command["command"]:
                    return
                addr = f"{command.get('client_address', '')}:{command.get('client_port', '')}"
                if addr not in users:
                    users.update((c["addr"], c.get("user", "")) for c in lister.client_list())
                if users.get(addr, "").startswith(node_user):
                    counts[command["command"].split(" ", 1)[0].strip('"').upper()] += 1
                    if show:
                        print(f"  {command['time']:.6f} {addr} {command['command'][:160]}")

    lister = redis.Redis.from_url(manager.redis_url())
    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.2)
    work()
    time.sleep(1.0)  # the agent's publisher rounds after the last answer
    lister.echo("corral-bench-end")
    thread.join(60)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--monitor", type=int, default=20)
    parser.add_argument("--show", action="store_true", help="print the agent's commands of one more job")
    parser.add_argument("--strace", type=int, default=0)
    parser.add_argument("--profile", help="py-spy record the agent during the first CPU window into this raw file")
    parser.add_argument("--rounds", type=int, default=1, help="CPU windows of --jobs each")
    args = parser.parse_args()
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        env = isolated_env(Path(tmp))
        with manager_and_agent(Path(tmp), env, workers=2, warmup=20) as (manager, agent, session):
            for round_ in range(args.rounds):
                spy = None
                if args.profile and round_ == 0:
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--nonblocking",
                            "--gil",
                            "-r",
                            "500",
                            "-f",
                            "raw",
                            "-o",
                            args.profile,
                            "--pid",
                            str(agent.pid),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1.0)
                before, t0 = tree_cpu(agent.pid), time.perf_counter()
                lat = [run_task(session, manager, ["real-000"])[0] for _ in range(args.jobs)]
                # Let the publisher's last rounds and the journal's sync land in this window.
                time.sleep(1.5)
                cpu = tree_cpu(agent.pid) - before
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(30)
                lat.sort()
                print(
                    f"agent CPU per job: {cpu / args.jobs * 1000:.2f} ms ({args.jobs} jobs; "
                    f"wall p50 {lat[len(lat) // 2] * 1000:.2f} ms, {time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
            if args.monitor:
                counts = monitor_agent_commands(
                    manager,
                    "corral-node-",  # the one agent's node user
                    lambda: [run_task(session, manager, ["real-000"]) for _ in range(args.monitor)],
                )
                total = sum(counts.values())
                detail = ", ".join(f"{name} {n / args.monitor:.2f}" for name, n in counts.most_common())
                print(f"agent Redis commands per job: {total / args.monitor:.2f} ({detail})", flush=True)
            if args.show:
                monitor_agent_commands(
                    manager, "corral-node-", lambda: run_task(session, manager, ["real-000"]), show=True
                )
            if args.strace:
                out = Path(tmp) / "strace.txt"
                tracer = subprocess.Popen(
                    [
                        "strace",
                        "-f",
                        "-c",
                        "-e",
                        "trace=sendto,recvfrom,sendmsg,recvmsg",
                        "-o",
                        str(out),
                        "-p",
                        str(agent.pid),
                    ],
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
                for _ in range(args.strace):
                    run_task(session, manager, ["real-000"])
                time.sleep(1.0)
                tracer.send_signal(signal.SIGINT)
                tracer.wait(10)
                calls = {}
                for line in out.read_text().splitlines():
                    parts = line.split()
                    if parts and parts[-1] in ("sendto", "recvfrom", "sendmsg", "recvmsg"):
                        calls[parts[-1]] = int(parts[3] if len(parts) == 6 else parts[3])
                print(
                    "agent socket calls per job (strace): "
                    + ", ".join(f"{k} {v / args.strace:.2f}" for k, v in sorted(calls.items())),
                    flush=True,
                )
    print(f"load average now {psutil.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
