"""One agent's start, measured by its CPU (issue 16): what each of "50 agents started at once" costs, without
starting 50 (a figure the machine's load barely moves, unlike the wall time of --start-50).

Usage: .venv/bin/python bench/bench_agent_start.py [--runs 10] [--source DIR ...]

A real manager (this checkout) and, run after run, one fresh agent (a new data directory: a new node, as in
--start-50) started through the `agent` console script; its CPU (user + system, /proc) is read when the node
list first shows it online and when it has answered an `echo hi` task, then it is stopped. Each --source (a
checkout, e.g. `git worktree add --detach /tmp/before <commit>`) runs the agent from that tree (PYTHONPATH),
the sources taking turns run after run so that the machine's moods fall on all of them alike. The agents keep
their compiled bytecode, as an installed agent does, in a scratch cache filled before the first run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402


def cpu_of(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def online(session: requests.Session, manager: Manager, hostname: str) -> bool:
    nodes = session.get(manager.url + "/api/task/node", timeout=10).json()["nodes"]
    return any(n["hostname"] == hostname and n["status"] == 0 for n in nodes)


def answer(session: requests.Session, manager: Manager, hostname: str) -> None:
    body = {"name": "bench", "command": "echo hi", "targets": [hostname], "timeout": 30}
    task = session.post(manager.url + "/api/tasks?wait=60", json=body, timeout=70).json()
    if task.get("status") != "completed":
        raise RuntimeError(f"echo hi on {hostname}: {task}")


def one_start(workdir: Path, env: dict[str, str], manager: Manager, session: requests.Session, name: str) -> tuple:
    """CPU seconds of one agent until online and until it answered a task, and the wall time to the answer."""
    agent = Agent(workdir, env, manager, name, 5.0)
    started = time.perf_counter()
    agent.start()
    try:
        wait_until(lambda: online(session, manager, name), timeout=60, what=f"{name} online\n{agent.output()}")
        until_online = cpu_of(agent.pid)
        answer(session, manager, name)
        wall = time.perf_counter() - started
        return until_online, cpu_of(agent.pid), wall
    finally:
        agent.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", type=Path, action="append", default=[], help="a checkout to run agents from")
    args = parser.parse_args()
    sources: list[Path | None] = [*args.source] or [None]
    figures: dict[str, list[tuple]] = {str(s or "this checkout"): [] for s in sources}
    with tempfile.TemporaryDirectory(prefix="corral-bench-start-") as tmp:
        workdir = Path(tmp)
        base = isolated_env(workdir)
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        envs = []
        for i, source in enumerate(sources):
            env = dict(base, PYTHONPYCACHEPREFIX=str(workdir / f"pycache-{i}"))
            if source is not None:
                env["PYTHONPATH"] = str(source)
            subprocess.run([sys.executable, "-c", "import worker_agent.cli"], env=env, cwd=workdir, check=True)
            envs.append(env)
        manager = Manager(workdir, base, ["--workers", "2"])
        manager.start()
        session = requests.Session()
        try:
            for run in range(args.runs):
                for i, (source, env) in enumerate(zip(sources, envs, strict=True)):
                    got = one_start(workdir, env, manager, session, f"start-{run:03d}-{i}")
                    figures[str(source or "this checkout")].append(got)
                    print(
                        f"run {run} {source or 'this checkout'}: online {got[0]:.3f} s CPU, answered "
                        f"{got[1]:.3f} s CPU, {got[2]:.2f} s wall",
                        flush=True,
                    )
        finally:
            manager.terminate()
    for name, runs in figures.items():
        med = [statistics.median(r[k] for r in runs) for k in range(3)]
        print(
            f"{name}: median of {len(runs)}: CPU until online {med[0]:.3f} s, until answered {med[1]:.3f} s; "
            f"wall until answered {med[2]:.2f} s (load average {psutil.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
