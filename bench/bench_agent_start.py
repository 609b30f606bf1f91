"""One agent's start, measured by its CPU (issue 16): what each of "50 agents started at once" costs, without
starting 50 (a figure the machine's load barely moves, unlike the wall time of --start-50).

Usage: .venv/bin/python bench/bench_agent_start.py [--runs 10] [--source DIR ...] [--callgrind]

A real manager (this checkout) and, run after run, one fresh agent (a new data directory: a new node, as in
--start-50) started through the `agent` console script; its CPU (user + system, /proc) is read when the node
list first shows it online and when it has answered an `echo hi` task, then it is stopped. Each --source (a
checkout, e.g. `git worktree add --detach /tmp/before <commit>`) runs the agent from that tree (PYTHONPATH),
the sources taking turns run after run so that the machine's moods fall on all of them alike. The agents keep
their compiled bytecode, as an installed agent does, in a scratch cache filled by one uncounted start per source.

--callgrind runs each agent under `valgrind --tool=callgrind` and prints the instructions it ran (every thread, not
its task's child process) from exec until online, until it answered, and in all until it exited after SIGTERM
(callgrind_control dumps the counts at the first two): counts the machine's load does not move, unlike CPU seconds
(a run takes about a minute; the heartbeats that fall between online and answered vary a little). The profiles
stay in --keep DIR if given.
"""

from __future__ import annotations

import argparse
import re
import shutil
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


def instructions_of(profile: Path) -> int:
    """The total instruction count (Ir) of a callgrind profile (one dump)."""
    found = re.search(r"^(?:summary|totals): (\d+)", profile.read_text(errors="replace"), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {profile}")
    return int(found.group(1))


def dump_counts(pid: int, what: str) -> None:
    """Make callgrind write the counts so far of the agent ``pid`` (its next dump file) and start again from 0."""
    subprocess.run(["callgrind_control", f"--dump={what}", str(pid)], check=True, capture_output=True, timeout=120)


def one_start(
    workdir: Path,
    env: dict[str, str],
    manager: Manager,
    session: requests.Session,
    name: str,
    profile: Path | None = None,
) -> tuple:
    """CPU seconds of one agent until online and until it answered a task, the wall time to the answer, and
    (with ``profile``: run under callgrind, which writes there) its instructions until online, until answered and
    until it exited (else zeros)."""
    agent = Agent(workdir, env, manager, name, 5.0)
    if profile is not None:
        agent.args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", *agent.args]
    started = time.perf_counter()
    agent.start()
    try:
        timeout = 60 if profile is None else 600
        wait_until(lambda: online(session, manager, name), timeout=timeout, what=f"{name} online\n{agent.output()}")
        until_online = cpu_of(agent.pid)
        if profile is not None:
            dump_counts(agent.pid, "online")
        answer(session, manager, name)
        wall = time.perf_counter() - started
        until_answered = cpu_of(agent.pid)
        if profile is not None:
            dump_counts(agent.pid, "answered")
    finally:
        agent.terminate(timeout=120)
    if profile is None:
        return until_online, until_answered, wall, 0, 0, 0
    parts = [instructions_of(Path(f"{profile}.{n}")) for n in (1, 2)] + [instructions_of(profile)]
    return until_online, until_answered, wall, parts[0], parts[0] + parts[1], sum(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--source", type=Path, action="append", default=[], help="a checkout to run agents from")
    parser.add_argument("--callgrind", action="store_true", help="count each agent's instructions (valgrind)")
    parser.add_argument("--keep", type=Path, help="with --callgrind: keep the profiles in this directory")
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
            # One start per source first, not counted: the modules an agent imports only once it runs (its job
            # functions, _strptime, encodings.idna...) are compiled into the scratch cache there, not in a counted
            # run (about 30 M instructions more in the first run of each source before).
            for i, env in enumerate(envs):
                one_start(workdir, env, manager, session, f"warm-up-{i}")
            for run in range(args.runs):
                for i, (source, env) in enumerate(zip(sources, envs, strict=True)):
                    name = f"start-{run:03d}-{i}"
                    profile = workdir / f"callgrind.{name}" if args.callgrind else None
                    got = one_start(workdir, env, manager, session, name, profile)
                    figures[str(source or "this checkout")].append(got)
                    counted = (
                        f"; instructions until online {got[3] / 1e6:,.0f} M, until answered {got[4] / 1e6:,.0f} M, "
                        f"until exited {got[5] / 1e6:,.0f} M"
                        if profile is not None
                        else ""
                    )
                    print(
                        f"run {run} {source or 'this checkout'}: online {got[0]:.3f} s CPU, answered "
                        f"{got[1]:.3f} s CPU, {got[2]:.2f} s wall{counted}",
                        flush=True,
                    )
                    if profile is not None and args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        for part in (profile, Path(f"{profile}.1"), Path(f"{profile}.2")):
                            shutil.copy(part, args.keep / part.name)
        finally:
            manager.terminate()
    for name, runs in figures.items():
        med = [statistics.median(r[k] for r in runs) for k in range(6)]
        counted = (
            f"; instructions until online {med[3] / 1e6:,.0f} M, until answered {med[4] / 1e6:,.0f} M, until exited "
            f"{med[5] / 1e6:,.0f} M"
            if args.callgrind
            else ""
        )
        print(
            f"{name}: median of {len(runs)}: CPU until online {med[0]:.3f} s, until answered {med[1]:.3f} s; "
            f"wall until answered {med[2]:.2f} s{counted} (load average {psutil.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
