"""Script figures (issue 17): a 1 MB script run on 50 real agents the first time (each agent fetches it from
Redis, checks its sha256 and caches it) and the second (each runs it from its checked cache), beside the same
fleet running `true` as a plain command.

Usage: .venv/bin/python bench/bench_script.py [--agents 50] [--size-mb 1] [--runs 2]
Prints the call -> every host answered time of each run, and how many agents logged a fetch and a cache hit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_tasks import stop_all  # noqa: E402  (bench/bench_tasks.py)
from common import machine  # noqa: E402  (bench/common.py)

from tests.e2e.harness import Agent, Manager, isolated_env  # noqa: E402
from tests.support import wait_until  # noqa: E402


def script_body(size_mb: float) -> str:
    """A python3 script of ``size_mb`` MB: one print, then comment lines (what a vendored tool's bulk costs)."""
    head = 'import sys\nprint("ran", len(sys.argv) - 1, "args")\n'
    line = "# " + "x" * 97 + "\n"
    return head + line * int(size_mb * 1_000_000 / len(line))


def timed(session: requests.Session, manager: Manager, body: dict[str, object]) -> tuple[float, str, int]:
    started = time.perf_counter()
    answer = session.post(f"{manager.url}/api/tasks?wait=300", json=body, timeout=320)
    took = time.perf_counter() - started
    assert answer.status_code == 201, answer.text
    task = answer.json()
    succeeded = sum(1 for host in task["hosts"] if host["status"] == "succeeded")
    return took, task["status"], succeeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=2, help="script runs after the first (cached)")
    args = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory(prefix="corral-bench-script-") as tmp:
        workdir = Path(tmp)
        env = isolated_env(workdir)
        manager = Manager(workdir, env, ["--workers", "2"])
        manager.start()
        session = requests.Session()
        names = [f"scr-{i:03d}" for i in range(args.agents)]
        agents: list[Agent] = []
        try:
            for name in names:
                agent = Agent(workdir, env, manager, name, 5.0)
                agent.start()
                agents.append(agent)
            wait_until(
                lambda: (
                    sum(
                        1
                        for n in session.get(manager.url + "/api/task/node").json()["nodes"]
                        if n["hostname"] in names and n["status"] == 0
                    )
                    == len(names)
                ),
                timeout=180,
                what=f"{len(names)} agents online",
            )
            body = script_body(args.size_mb)
            started = time.perf_counter()
            made = session.post(
                f"{manager.url}/api/scripts",
                json={"name": "bulk", "version": "1", "interpreter": "python3", "body": body},
                timeout=60,
            )
            assert made.status_code == 201, made.text
            print(f"registered {made.json()['size'] / 1e6:.2f} MB in {(time.perf_counter() - started) * 1000:.0f} ms")
            plain = {"name": "plain", "command": "true", "targets": names}
            took, status, ok = timed(session, manager, plain)
            print(f"warm-up `true` on {len(names)} agents: {took * 1000:.0f} ms ({status}, {ok} succeeded)")
            run = {"name": "bulk", "script": "bulk@1", "targets": names}
            for i in range(1 + args.runs):
                took, status, ok = timed(session, manager, run)
                what = "first (shipped)" if i == 0 else "cached"
                print(f"script run {i + 1}, {what}: {took * 1000:.0f} ms ({status}, {ok} succeeded)", flush=True)
            took, status, ok = timed(session, manager, {**plain, "command": "python3 -c 'print(\"ran\")'"})
            print(f"the same interpreter started with no script, on {len(names)} agents: {took * 1000:.0f} ms")
            fetched = sum(1 for a in agents if "bulk@1" in a.output() and " fetched (" in a.output())
            cached = sum(1 for a in agents if "from the cache" in a.output())
            print(f"agents that fetched it: {fetched}; that ran it from their cache: {cached}")
        finally:
            stop_all(agents)
            manager.terminate()


if __name__ == "__main__":
    main()
