"""The peer bench (issue 16): corral side by side with Salt and Ansible on this machine, `echo hi` on N nodes.

Usage, from a clean clone (corral's .venv made as the README says; Salt and ansible-core go into var/peers/):

    python3 bench/peers/install.py                  # once: Salt and ansible-core from PyPI, own virtualenvs
    .venv/bin/python bench/peers/bench_peers.py --sizes 1,10,50 --runs 50

For each N in --sizes, one at a time, each block starting on an idle machine (CPU busy below --idle-cpu % over
3 s; after --idle-deadline s it gives up, says so and goes on) and measuring once its fleet is up and settled:

- Salt: a salt-master and N salt-minions on loopback (bench/peers/salt_fleet.py, a scratch directory, auto-accepted
  keys), a warm LocalClient (bench/peers/salt_client.py, in Salt's virtualenv): `cmd.run 'echo hi'` on '*',
  timed until all N returns are in.
- corral: a real manager and N real agents (tests/e2e/harness.py, as bench/bench_tasks.py), a warm HTTP session:
  `POST /api/tasks?wait=60` of `echo hi` on `*`, timed until the answer holds all N results (corral_block()).
- Ansible: `ansible all -m command -a 'echo hi' -f N` over an inventory of N aliases of this machine with
  `ansible_connection=local`, the whole command timed. No SSH, so a lower bound of Ansible on a real fleet.

Each prints p50 and p99 over --runs runs (Ansible: --ansible-runs) after --warmup runs, the ratio Salt/corral, and
the idle PSS of a minion, an agent, the master and the manager (with its Redis), and the VM's speed before and after
the timed runs (bench/common.py's speed_ms: a fixed workload's CPU; this VM flips between two speeds 1.55x apart, so
a ratio holds only between blocks of matching speeds). Every node runs on this machine, so at 50 nodes the figures
are as much the machine's as the tool's: compare within a table, one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psutil
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from bench_tasks import online_count, pss_mb, run_task, stop_all, tree_pids  # noqa: E402  (bench/bench_tasks.py)
from common import machine, ms, pct, speed_ms  # noqa: E402  (bench/common.py)
from install import installed_version, venv_bin  # noqa: E402  (bench/peers/install.py)
from salt_fleet import CLIENT, SaltFleet  # noqa: E402  (bench/peers/salt_fleet.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402

ANSIBLE_LABEL = "Ansible, local connection (a lower bound: no SSH)"


@dataclass
class Block:
    """One tool's figures at one fleet size."""

    label: str
    latencies: list[float]
    node_pss_mb: float | None = None  # idle PSS of one minion / agent (its process tree)
    server_pss_mb: float | None = None  # idle PSS of the master / the manager and its Redis
    speeds: tuple[float, float] | None = None  # the VM's speed (common.speed_ms) before and after the timed runs

    @property
    def p50(self) -> float:
        return pct(self.latencies, 0.5)

    @property
    def p99(self) -> float:
        return pct(self.latencies, 0.99)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in psutil.getloadavg())


def wait_idle(max_busy: float, deadline: float, what: str) -> None:
    """Until the whole machine's CPU was busy less than ``max_busy`` % over 3 s (the load average lags by
    minutes behind a fleet that just stopped, so it is printed, not waited on). Gives up after ``deadline`` s,
    saying so: on a shared machine the bench goes on and the reader weighs the figures."""
    end = time.monotonic() + deadline
    while True:
        busy = psutil.cpu_percent(interval=3)
        if busy < max_busy:
            print(f"  [{now()}] idle before {what}: CPU {busy:.0f}% busy over 3 s, load average {load()}", flush=True)
            return
        if time.monotonic() >= end:
            print(
                f"  [{now()}] NOT IDLE before {what}: still {busy:.0f}% busy after {deadline:.0f} s "
                f"(threshold {max_busy:.0f}%), load average {load()}: measuring anyway",
                flush=True,
            )
            return


def salt_block(size: int, runs: int, warmup: int, settle: Callable[[], None]) -> Block:
    """A master and ``size`` minions; a warm LocalClient in Salt's virtualenv times `cmd.run 'echo hi'`."""
    with SaltFleet(size) as fleet:
        settle()
        before = speed_ms()
        done = subprocess.run(
            [
                str(venv_bin("salt", "python")),
                str(CLIENT),
                "bench",
                "--config",
                str(fleet.config_dir),
                "--expect",
                str(size),
                "--runs",
                str(runs),
                "--warmup",
                str(warmup),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"salt_client.py bench failed: {done.stderr.strip()[-2000:]}\n{fleet.logs()}")
        speeds = (before, speed_ms())
        latencies = json.loads(done.stdout.strip().splitlines()[-1])["latencies"]
        return Block(
            "Salt, warm LocalClient",
            latencies,
            node_pss_mb=pss_mb(fleet.minion_pids()) / size,
            server_pss_mb=pss_mb(fleet.master_pids()),
            speeds=speeds,
        )


def corral_block(size: int, runs: int, warmup: int = 5, settle: Callable[[], None] = lambda: None) -> Block:
    """corral's side, whole: a real manager (2 workers) and ``size`` real agents in a scratch directory, a warm
    requests.Session, ``warmup`` then ``runs`` calls of `POST /api/tasks?wait=60` (bench_tasks.run_task) of
    `echo hi` on `*`, each timed until the answer holds every node's result; everything stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="corral-peers-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        manager = Manager(workdir, env, ["--workers", "2"])
        manager.start()
        agents: list[Agent] = []
        try:
            session = requests.Session()
            for i in range(size):
                agent = Agent(workdir, env, manager, f"peer-{i:03d}", 5.0)
                agent.start()
                agents.append(agent)
            wait_until(
                lambda: online_count(session, manager, "peer-") == size,
                timeout=300,
                interval=0.5,
                what=f"{size} agents online",
            )
            settle()

            def echo_hi() -> float:
                elapsed, task = run_task(session, manager, ["*"])
                if task["total_hosts"] != size:
                    raise RuntimeError(f"task {task['task_id']} reached {task['total_hosts']} nodes, not {size}")
                return elapsed

            for _ in range(warmup):  # connections, SQLite pages, each agent's first job
                echo_hi()
            before = speed_ms()
            latencies = [echo_hi() for _ in range(runs)]
            speeds = (before, speed_ms())
            agent_pids = [pid for agent in agents for pid in tree_pids(agent.pid)]
            return Block(
                "corral, POST /api/tasks?wait=60",
                latencies,
                node_pss_mb=pss_mb(agent_pids) / size,
                server_pss_mb=pss_mb(tree_pids(manager.pid)),
                speeds=speeds,
            )
        finally:
            stop_all(agents)  # all signalled first: 50 agents stop in parallel, not one after another
            manager.terminate()


def ansible_block(size: int, runs: int, warmup: int) -> Block:
    """`ansible all -m command -a 'echo hi' -f N` on N local-connection aliases, the whole command timed."""
    with tempfile.TemporaryDirectory(prefix="corral-ansible-") as tmp:
        root = Path(tmp)
        python = venv_bin("ansible", "python")
        inventory = root / "inventory"
        inventory.write_text(
            "".join(f"ans-{i:03d} ansible_connection=local ansible_python_interpreter={python}\n" for i in range(size))
        )
        config = root / "ansible.cfg"
        config.write_text("")  # this one, never an ansible.cfg of the current directory or the user's
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")},
            "ANSIBLE_CONFIG": str(config),
            "ANSIBLE_HOME": str(root / "home"),
            "ANSIBLE_LOCAL_TEMP": str(root / "local-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(root / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
        }
        args = [str(venv_bin("ansible", "ansible")), "all", "-i", str(inventory), "-m", "command"]
        args += ["-a", "echo hi", "-f", str(size), "-o"]

        def echo_hi() -> float:
            t0 = time.perf_counter()
            done = subprocess.run(args, capture_output=True, text=True, env=env)
            elapsed = time.perf_counter() - t0
            ok = sum(1 for line in done.stdout.splitlines() if "| CHANGED | rc=0 |" in line and line.endswith("hi"))
            if done.returncode != 0 or ok != size:
                raise RuntimeError(f"ansible: exit {done.returncode}, {ok} of {size} said hi:\n{done.stdout[-2000:]}")
            return elapsed

        for _ in range(warmup):
            echo_hi()
        before = speed_ms()
        latencies = [echo_hi() for _ in range(runs)]
        return Block(ANSIBLE_LABEL, latencies, speeds=(before, speed_ms()))


def table(size: int, runs: int, ansible_runs: int, blocks: list[Block]) -> str:
    corral = next(b for b in blocks if b.label.startswith("corral"))
    lines = [
        f"| N = {size} | p50 | p99 | p50 / corral's | idle PSS per node | idle PSS of master / manager "
        "| VM speed before / after (lower is faster) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for block in blocks:
        count = ansible_runs if block.label == ANSIBLE_LABEL else runs
        node = f"{block.node_pss_mb:.1f} MB" if block.node_pss_mb is not None else ""
        server = f"{block.server_pss_mb:.0f} MB" if block.server_pss_mb is not None else ""
        speeds = f"{block.speeds[0]:.1f} / {block.speeds[1]:.1f} ms" if block.speeds is not None else ""
        lines.append(
            f"| {block.label} ({count} runs) | {ms(block.p50)} | {ms(block.p99)} | "
            f"{block.p50 / corral.p50:.1f}x | {node} | {server} | {speeds} |"
        )
    salt = next((b for b in blocks if b.label.startswith("Salt")), None)
    if salt is not None:
        lines.append(
            f"\nratio Salt/corral at N = {size}: p50 {salt.p50 / corral.p50:.1f}x, p99 {salt.p99 / corral.p99:.1f}x"
        )
    return "\n".join(lines)


def summary(results: dict[int, list[Block]]) -> str:
    """One row per N, the README's shape: each tool's p50 / p99 and the ratio Salt/corral."""

    def cell(blocks: list[Block], prefix: str) -> str:
        block = next((b for b in blocks if b.label.startswith(prefix)), None)
        return f"{ms(block.p50)} / {ms(block.p99)}" if block is not None else ""

    lines = [
        f"| N | Salt, warm LocalClient | corral, POST /api/tasks?wait=60 | {ANSIBLE_LABEL} | Salt / corral (p50) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, blocks in results.items():
        corral = next(b for b in blocks if b.label.startswith("corral"))
        salt = next((b for b in blocks if b.label.startswith("Salt")), None)
        ratio = f"{salt.p50 / corral.p50:.1f}x" if salt is not None else ""
        lines.append(
            f"| {size} | {cell(blocks, 'Salt')} | {cell(blocks, 'corral')} | {cell(blocks, 'Ansible')} | {ratio} |"
        )
    return "\n".join(lines) + "\n(p50 / p99 of `echo hi` on all N nodes, until every result is in)"


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}")  # unwinds through the fleets' cleanup, as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,50", help="fleet sizes, comma-separated (default 1,10,50)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per block (default 30)")
    parser.add_argument("--ansible-runs", type=int, default=10, help="timed Ansible runs (default 10: seconds each)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (Ansible: 1)")
    parser.add_argument("--idle-cpu", type=float, default=25, help="idle means CPU busy below this %% (default 25)")
    parser.add_argument("--idle-deadline", type=float, default=180, help="seconds to wait for idle (default 180)")
    parser.add_argument("--skip", default="", help="comma-separated blocks to leave out: salt, ansible")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    signal.signal(signal.SIGTERM, stop_on_sigterm)

    versions = [f"corral {installed_version_here()}"]
    if "salt" not in skip:
        versions.append(f"Salt {installed_version('salt', 'salt')}")
    if "ansible" not in skip:
        versions.append(f"ansible-core {installed_version('ansible', 'ansible-core')}")
    if any(v.endswith(" None") for v in versions):
        raise SystemExit(f"{', '.join(versions)}: run python3 bench/peers/install.py first")
    print(machine(), f"load average {load()}")
    print(f"{now()}: {', '.join(versions)}; sizes {sizes}, {args.runs} runs after {args.warmup} warm-up runs")

    def idle(what: str, deadline: float) -> Callable[[], None]:
        return lambda: wait_idle(args.idle_cpu, deadline, what)

    tables = []
    results: dict[int, list[Block]] = {}
    for size in sizes:
        print(f"\nN = {size}", flush=True)
        blocks = []
        if "salt" not in skip:
            idle(f"Salt, N = {size}", args.idle_deadline)()
            blocks.append(salt_block(size, args.runs, args.warmup, idle(f"Salt's fleet of {size} settled", 60)))
            print(f"  Salt: p50 {ms(blocks[-1].p50)}, p99 {ms(blocks[-1].p99)}", flush=True)
        idle(f"corral, N = {size}", args.idle_deadline)()
        blocks.append(corral_block(size, args.runs, args.warmup, idle(f"corral's fleet of {size} settled", 60)))
        print(f"  corral: p50 {ms(blocks[-1].p50)}, p99 {ms(blocks[-1].p99)}", flush=True)
        if "ansible" not in skip:
            idle(f"Ansible, N = {size}", args.idle_deadline)()
            blocks.append(ansible_block(size, args.ansible_runs, 1))
            print(f"  Ansible: p50 {ms(blocks[-1].p50)}, p99 {ms(blocks[-1].p99)}", flush=True)
        results[size] = blocks
        tables.append(table(size, args.runs, args.ansible_runs, blocks))
        print("\n" + tables[-1], flush=True)
    print(f"\n{now()}, load average {load()}; all the tables again:\n")
    print("\n\n".join(tables))
    print("\n" + summary(results))


def installed_version_here() -> str:
    """corral's own version and commit, so that a table names the code it measured."""
    import importlib.metadata

    commit = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return f"{importlib.metadata.version('corral')} ({commit or 'no git'})"


if __name__ == "__main__":
    main()
