"""Fleet task figures (issue 3): `echo hi` on 1, 10 and 50 real agents and on simulated fleets, agent
footprint, and the manager's idle cost with 10,000 heartbeating simulated agents.

Usage: .venv/bin/python bench/bench_tasks.py [--runs 100] [--skip-10k] [--one-agent] [--start-50] [--repeat N]
    [--fleet N]
       .venv/bin/python bench/bench_tasks.py --node-list-10k [--requests 200] [--rounds 1] [--nodes 10000]
--one-agent measures only `echo hi` on 1 real agent; --repeat runs that measure N times (fresh manager and
agent each time) and prints the median of the p50s, for a machine shared with other work.
--start-50 measures only the start of 50 real agents at once on a fresh manager (N times with --repeat):
exec -> all 50 answered a task, and the CPU each agent burnt until then (what 50 starts cost on 2 cores);
--source DIR runs that manager and those agents from another checkout (e.g. `git archive` of the commit before);
--idle then measures the 50 idle agents' PSS and CPU as the full run does.
--fleet N measures only `echo hi` on N simulated agents (bench/fleet_sim.py) until every result is stored.
--node-list-10k measures only the manager (2 workers) with 10,000 simulated agents heartbeating: its idle CPU
and Redis's over 30 s, then p50/p99 of GET /api/task/node; --rounds repeats both on the same fleet.
Every figure is measured with a warm HTTP client against a real `manager` on this machine.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine, ms, pct  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402


def run_task(session: requests.Session, manager: Manager, targets: list[str], wait: int = 60) -> tuple[float, dict]:
    """POST a task in real-time mode; the time until every node's result is stored and answered."""
    t0 = time.perf_counter()
    answer = session.post(
        f"{manager.url}/api/tasks?wait={wait}",
        json={"name": "bench", "command": "echo hi", "targets": targets, "timeout": 60},
    )
    elapsed = time.perf_counter() - t0
    answer.raise_for_status()
    task = answer.json()
    if task["status"] != "completed":
        raise RuntimeError(f"task {task['task_id']} ended {task['status']}: {task.get('hosts', [])[:3]}")
    return elapsed, task


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_full_info().pss
        except psutil.Error:
            pass
    return total / 2**20


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_pids(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


def online_count(session: requests.Session, manager: Manager, prefix: str) -> int:
    nodes = session.get(manager.url + "/api/task/node").json()["nodes"]
    return sum(1 for n in nodes if n["hostname"].startswith(prefix) and n["status"] == 0)


@contextmanager
def manager_and_agent(
    workdir: Path, env: dict[str, str], workers: int, warmup: int
) -> Iterator[tuple[Manager, Agent, requests.Session]]:
    """A real manager of ``workers`` gunicorn workers and one real agent, ``real-000``, online and warmed up by
    ``warmup`` `echo hi` calls (connections, SQLite pages, the agent's first jobs); both stopped at the end."""
    manager = Manager(workdir, env, ["--workers", str(workers)])
    manager.start()
    agent = Agent(workdir, env, manager, "real-000", 5.0)
    session = requests.Session()
    try:
        agent.start()
        wait_until(lambda: online_count(session, manager, "real-000") == 1, timeout=30, what="the agent")
        for _ in range(warmup):
            run_task(session, manager, ["real-000"])
        yield manager, agent, session
    finally:
        agent.terminate()
        manager.terminate()


def one_agent(
    manager: Manager, env: dict[str, str], workdir: Path, session: requests.Session, runs: int
) -> tuple[Agent, float]:
    """`echo hi` on 1 real agent; prints p50 and p99, returns the agent (still running) and the p50."""
    one = Agent(workdir, env, manager, "real-000", 5.0)
    one.start()
    wait_until(lambda: online_count(session, manager, "real-000") == 1, timeout=30, what="first agent")
    for _ in range(5):  # warm up: connections, SQLite pages, the agent's first job
        run_task(session, manager, ["real-000"])
    lat = [run_task(session, manager, ["real-000"])[0] for _ in range(runs)]
    print(
        f"echo hi on 1 real agent, API call -> result stored, {runs} runs: p50 {ms(pct(lat, 0.5))}, "
        f"p99 {ms(pct(lat, 0.99))}",
        flush=True,
    )
    return one, pct(lat, 0.5)


def real_agents(manager: Manager, env: dict[str, str], workdir: Path, session: requests.Session, runs: int) -> None:
    one, _p50 = one_agent(manager, env, workdir, session, runs)

    agents = [one]
    started = time.perf_counter()
    for i in range(1, 50):
        agent = Agent(workdir, env, manager, f"real-{i:03d}", 5.0)
        agent.start()
        agents.append(agent)
    wait_until(lambda: online_count(session, manager, "real-") == 50, timeout=120, what="50 agents online")
    run_task(session, manager, [f"real-{i:03d}" for i in range(50)])
    print(f"50 real agents: started -> all 50 answered a task in {time.perf_counter() - started:.2f} s")

    for count in (10, 50):
        targets = [f"real-{i:03d}" for i in range(count)]
        times = [run_task(session, manager, targets)[0] for _ in range(5)]
        print(
            f"echo hi on {count} real agents, until every result is stored (median of 5): "
            f"{ms(statistics.median(times))}"
        )

    time.sleep(10)  # let start-up work settle before measuring idle
    pids = [p for a in agents for p in tree_pids(a.pid)]
    before = cpu_seconds(pids)
    window = 30.0
    time.sleep(window)
    idle = (cpu_seconds(pids) - before) / window / 50 * 100
    print(
        f"50 idle real agents: PSS {pss_mb(pids):.0f} MB in all ({pss_mb(pids) / 50:.1f} MB each), "
        f"idle CPU {idle:.3f}% of a core each (interval 5 s)"
    )
    for agent in agents:
        agent.terminate()
    import_floor()


def simulated_echo(session: requests.Session, manager: Manager, count: int, targets: list[str], runs: int = 5) -> float:
    """`echo hi` on ``count`` simulated agents (``targets`` selects them) until every result is stored: prints
    the median of ``runs`` (and each), returns it."""
    times = []
    for _ in range(runs):
        elapsed, task = run_task(session, manager, targets, wait=300)
        if len(task["hosts"]) != count:
            raise RuntimeError(f"{len(task['hosts'])} hosts answered, {count} expected")
        times.append(elapsed)
    median = statistics.median(times)
    each = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"echo hi on {count:,} simulated agents, until every result is stored (median of {runs}): "
        f"{ms(median)} ({each} s)"
    )
    return median


FLOOR_IMPORTS = "redis, rq, psutil, marshmallow"


def stop_all(agents: list[Agent]) -> None:
    """SIGTERM every agent at once, then wait for each; one that does not stop in 30 s is killed."""
    for agent in agents:
        if agent.alive():
            agent.popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for agent in agents:
        try:
            agent.popen.wait(30)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            agent.kill()


def start_50(runs: int, source: Path | None, idle: bool = False) -> None:
    """50 real agents started at once on a fresh manager -> all 50 answered `echo hi`, ``runs`` times.

    The agents keep their compiled bytecode, as an installed agent does (pip compiles it at install): in a
    scratch cache, filled by one import before the clock starts. ``source`` runs the manager and the agents from
    another checkout (PYTHONPATH), to measure the code before a change in the same sitting."""
    walls = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
            workdir = Path(tmp)
            env = isolated_env(workdir)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
            if source is not None:
                env["PYTHONPATH"] = str(source)
            subprocess.run([sys.executable, "-c", "import worker_agent.cli"], env=env, cwd=workdir, check=True)
            walls.append(start_50_once(workdir, env, idle))
    if runs > 1:
        print(f"median of {runs}: {statistics.median(walls):.2f} s")


def start_50_once(workdir: Path, env: dict[str, str], idle: bool = False) -> float:
    """One start of 50 agents; prints the wall time, each agent's CPU seconds until the node list showed it
    online (its start-up and join: what the start costs, however long the machine's other work makes the run)
    and until the task answered, the manager's CPU and the agents' PSS; returns the wall time."""
    manager = Manager(workdir, env, ["--workers", "2"])
    manager.start()
    session = requests.Session()
    agents: list[Agent] = []
    try:
        names = [f"real-{i:03d}" for i in range(50)]
        manager_pids = tree_pids(manager.pid)
        manager_cpu = cpu_seconds(manager_pids)
        load = psutil.getloadavg()[0]
        started = time.perf_counter()
        for name in names:
            agent = Agent(workdir, env, manager, name, 5.0)
            agent.start()
            agents.append(agent)
        by_name = {a.hostname: a for a in agents}
        ready_cpu: dict[str, float] = {}  # each agent's CPU when the node list first shows it online

        def all_online() -> bool:
            for node in session.get(manager.url + "/api/task/node").json()["nodes"]:
                name = node["hostname"]
                if name in by_name and node["status"] == 0 and name not in ready_cpu:
                    ready_cpu[name] = cpu_seconds([by_name[name].pid])
            return len(ready_cpu) == 50

        wait_until(all_online, timeout=120, what="50 agents online")
        run_task(session, manager, names)
        wall = time.perf_counter() - started
        per_agent = sorted(cpu_seconds([a.pid]) for a in agents)
        to_online = sorted(ready_cpu.values())
        manager_cpu = cpu_seconds(manager_pids) - manager_cpu
        paced = sum(1 for a in agents if "paces joins" in a.output())
        pss = pss_mb([p for a in agents for p in tree_pids(a.pid)]) / 50
        print(
            f"50 real agents: started -> all 50 answered a task in {wall:.2f} s; CPU per agent until online "
            f"median {statistics.median(to_online):.3f} s, max {to_online[-1]:.3f} s (all 50: {sum(to_online):.1f} s), "
            f"until the task answered median {statistics.median(per_agent):.3f} s (all 50: {sum(per_agent):.1f} s); "
            f"manager {manager_cpu:.1f} s; {paced} agents paced (429); PSS {pss:.1f} MB per agent; "
            f"load average before {load:.2f}",
            flush=True,
        )
        if idle:
            time.sleep(10)  # let start-up work settle, as the full run does
            pids = [p for a in agents for p in tree_pids(a.pid)]
            before, window = cpu_seconds(pids), 30.0
            time.sleep(window)
            print(
                f"  then idle: PSS {pss_mb(pids) / 50:.1f} MB each, CPU "
                f"{(cpu_seconds(pids) - before) / window / 50 * 100:.3f}% of a core each (interval 5 s)",
                flush=True,
            )
        return wall
    finally:
        stop_all(agents)
        manager.terminate()


def import_floor(count: int = 50) -> None:
    """PSS of bare interpreters that only import the libraries an agent cannot do without: the floor under
    the agent's own figure, measured the same way (sum of PSS over 50 processes)."""
    code = f"import sys, {FLOOR_IMPORTS}; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        total = pss_mb([proc.pid for proc in procs])
        print(f"floor: {count} interpreters importing only {FLOOR_IMPORTS}: PSS {total / count:.1f} MB each")
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)


def simulated(manager: Manager, workdir: Path, session: requests.Session, nodes: int, prefix: str) -> subprocess.Popen:
    token_file = workdir / "data" / "join-token"
    sim = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("fleet_sim.py")),
            "--manager-url",
            manager.url,
            "--token-file",
            str(token_file),
            "--redis-url",
            manager.redis_url(),
            "--nodes",
            str(nodes),
            "--processes",
            "2",
            "--interval",
            "5",
            "--prefix",
            prefix,
        ],
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        wait_until(
            lambda: online_count(session, manager, prefix + "-") == nodes,
            timeout=300,
            interval=1,
            what=f"{nodes} simulated nodes",
        )
    except BaseException:  # not all online (a join refused, Ctrl-C): the caller never gets it to stop
        sim.terminate()
        sim.wait(60)
        raise
    return sim


@contextmanager
def simulated_fleet(nodes: int, prefix: str) -> Iterator[tuple[Manager, requests.Session]]:
    """A real manager (2 workers) in a scratch directory with ``nodes`` simulated nodes joined and heartbeating;
    both stopped on the way out, whatever the bench did."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        manager = Manager(workdir, isolated_env(workdir), ["--workers", "2"])
        manager.start()
        session = requests.Session()
        sim = None
        try:
            sim = simulated(manager, workdir, session, nodes, prefix)
            yield manager, session
        finally:
            if sim is not None:
                sim.terminate()
                sim.wait(30)
            manager.terminate()


def manager_and_redis_pids(manager: Manager) -> tuple[list[int], list[int]]:
    """The manager's own processes (gunicorn's, the duties') and its Redis's."""
    manager_pids = tree_pids(manager.pid)
    redis_pids = [p for p in manager_pids if "redis-server" in " ".join(psutil.Process(p).cmdline())]
    return [p for p in manager_pids if p not in redis_pids], redis_pids


def idle_cpu(manager: Manager, window: float = 30.0) -> tuple[str, float]:
    """The manager's and its Redis's CPU over ``window`` seconds of idling (nobody calls the API), and the
    manager's alone as a fraction of a core."""
    own, redis_pids = manager_and_redis_pids(manager)
    m0, r0 = cpu_seconds(own), cpu_seconds(redis_pids)
    time.sleep(window)
    m_cpu = (cpu_seconds(own) - m0) / window * 100
    r_cpu = (cpu_seconds(redis_pids) - r0) / window * 100
    text = (
        f"manager {m_cpu:.1f}% of a core, {pss_mb(own):.0f} MB PSS; "
        f"redis {r_cpu:.1f}% of a core, {pss_mb(redis_pids):.0f} MB PSS"
    )
    return text, m_cpu / 100


def node_list_latency(manager: Manager, session: requests.Session, count: int) -> tuple[list[float], int]:
    """``count`` GETs of the node list one after another; their latencies and the size of the last answer."""
    lat = []
    size = 0
    for _ in range(count):
        t0 = time.perf_counter()
        answer = session.get(manager.url + "/api/task/node")
        answer.raise_for_status()
        lat.append(time.perf_counter() - t0)
        size = len(answer.content)
    return lat, size


def node_list_10k(nodes: int, requests_count: int, rounds: int) -> None:
    """The node list with ``nodes`` simulated agents heartbeating every 5 s (issue 16: p99 <= 50 ms at
    10,000), and the manager's idle CPU meanwhile (issue 16: under 10 % of a core)."""
    with simulated_fleet(nodes, "nl") as (manager, session):
        time.sleep(10)  # let the joins' after-work settle before measuring idle
        for r in range(rounds):
            idle, idle_share = idle_cpu(manager)
            node_list_latency(manager, session, 20)  # warm up: each worker's caches, the connection
            own = manager_and_redis_pids(manager)[0]
            cpu0, t0 = cpu_seconds(own), time.monotonic()
            lat, size = node_list_latency(manager, session, requests_count)
            # The manager's CPU per GET: what it burnt meanwhile, less its idle share over the same time.
            per_get = (cpu_seconds(own) - cpu0 - idle_share * (time.monotonic() - t0)) / len(lat)
            load = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
            print(
                f"round {r + 1}: {nodes} simulated agents heartbeating every 5 s: idle {idle}; "
                f"GET /api/task/node ({size / 2**20:.1f} MiB), {len(lat)} requests: p50 {ms(pct(lat, 0.5))}, "
                f"p99 {ms(pct(lat, 0.99))}, mean {ms(statistics.mean(lat))}, manager CPU per GET {ms(per_get)} "
                f"(load average {load})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--skip-10k", action="store_true")
    parser.add_argument("--one-agent", action="store_true", help="only `echo hi` on 1 real agent")
    parser.add_argument("--repeat", type=int, default=1, help="with --one-agent: measure N times")
    parser.add_argument("--floor", action="store_true", help="only the PSS floor of the agent's libraries")
    parser.add_argument("--fleet", type=int, help="only `echo hi` on this many simulated agents (a fresh manager)")
    parser.add_argument("--start-50", action="store_true", help="only: 50 real agents started -> all answered a task")
    parser.add_argument("--source", type=Path, help="with --start-50: run manager and agents from this checkout")
    parser.add_argument("--idle", action="store_true", help="with --start-50: then the idle agents' PSS and CPU")
    parser.add_argument("--node-list-10k", action="store_true", help="only the node list and idle CPU at 10,000")
    parser.add_argument("--nodes", type=int, default=10000, help="with --node-list-10k: how many simulated agents")
    parser.add_argument("--requests", type=int, default=200, help="with --node-list-10k: GETs per round")
    parser.add_argument("--rounds", type=int, default=1, help="with --node-list-10k: measure N times, one fleet")
    args = parser.parse_args()
    print(machine(), f"load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    if args.floor:
        import_floor()
        return
    if args.fleet:
        with simulated_fleet(args.fleet, f"sim{args.fleet}") as (manager, session):
            run_task(session, manager, ["sim=yes"], wait=300)  # warm up
            simulated_echo(session, manager, args.fleet, ["sim=yes"])
        print(f"load average now {psutil.getloadavg()[0]:.2f}")
        return
    if args.start_50:
        start_50(args.repeat, args.source, args.idle)
        return
    if args.node_list_10k:
        node_list_10k(args.nodes, args.requests, args.rounds)
        return
    if args.one_agent:
        p50s = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
                env = isolated_env(Path(tmp))
                manager = Manager(Path(tmp), env, ["--workers", "2"])
                manager.start()
                try:
                    agent, p50 = one_agent(manager, env, Path(tmp), requests.Session(), args.runs)
                    agent.terminate()
                    p50s.append(p50)
                finally:
                    manager.terminate()
        load = psutil.getloadavg()[0]
        print(f"median of {len(p50s)} p50s: {ms(statistics.median(p50s))} (load average now {load:.2f})")
        return
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        manager = Manager(workdir, env, ["--workers", "2"])
        manager.start()
        session = requests.Session()
        try:
            real_agents(manager, env, workdir, session, args.runs)

            sim = simulated(manager, workdir, session, 1000, "sim1k")
            simulated_echo(session, manager, 1000, ["sim=yes"])
            sim.terminate()
            sim.wait(30)

            if not args.skip_10k:
                sim = simulated(manager, workdir, session, 10000, "sim10k")
                time.sleep(10)
                manager_pids = tree_pids(manager.pid)
                redis_pids = [p for p in manager_pids if "redis-server" in " ".join(psutil.Process(p).cmdline())]
                own = [p for p in manager_pids if p not in redis_pids]
                window = 30.0
                m0, r0 = cpu_seconds(own), cpu_seconds(redis_pids)
                time.sleep(window)
                m_cpu = (cpu_seconds(own) - m0) / window * 100
                r_cpu = (cpu_seconds(redis_pids) - r0) / window * 100
                lat = []
                for _ in range(200):
                    t0 = time.perf_counter()
                    session.get(manager.url + "/api/task/node").raise_for_status()
                    lat.append(time.perf_counter() - t0)
                print(
                    f"10,000 simulated agents heartbeating every 5 s: manager {m_cpu:.1f}% of a core, "
                    f"{pss_mb(own):.0f} MB PSS; redis {r_cpu:.1f}% of a core, {pss_mb(redis_pids):.0f} MB PSS; "
                    f"GET /api/task/node p50 {ms(pct(lat, 0.5))}, p99 {ms(pct(lat, 0.99))}"
                )
                # The 1,000 of before are offline now: the query picks the 10,000 by their hostnames.
                simulated_echo(session, manager, 10000, ["query:hostname:sim10k-*"])
                sim.terminate()
                sim.wait(60)
        finally:
            manager.terminate()


if __name__ == "__main__":
    main()
