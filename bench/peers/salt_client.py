"""Salt's side of the peer bench, run by the Python of Salt's own virtualenv (var/peers/salt), never corral's.

    salt_client.py ping  --config DIR --expect N [--deadline S]   until N minions answer test.ping
    salt_client.py bench --config DIR --expect N --runs R [--warmup W]

`bench` times a warm LocalClient, the client Salt's own tools and salt-api are built on: one client and one
subscription to the master's event bus kept for every run (as a long-lived program would keep them, and as
corral's side keeps one HTTP session), `cmd.run 'echo hi'` on '*', each run timed until all N returns are in.
It prints one JSON object on stdout: {"latencies": [seconds...]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import salt.client  # type: ignore[import-not-found]  # only in Salt's virtualenv
from salt.exceptions import SaltException  # type: ignore[import-not-found]


def client(config_dir: str) -> salt.client.LocalClient:
    local = salt.client.LocalClient(c_path=f"{config_dir}/master")
    # Subscribe once: LocalClient.cmd keeps the subscription when it found one open, instead of connecting to
    # and leaving the event bus on every call. Salt at its fastest.
    local.event.connect_pub()
    return local


def echo_hi(local: salt.client.LocalClient, expect: int) -> float:
    """One `cmd.run 'echo hi'` on every minion; the seconds until all ``expect`` returns are in."""
    t0 = time.perf_counter()
    returns = local.cmd("*", "cmd.run", ["echo hi"], timeout=60)
    elapsed = time.perf_counter() - t0
    wrong = {minion: out for minion, out in returns.items() if out != "hi"}
    if len(returns) != expect or wrong:
        sample = dict(list(wrong.items())[:3])
        raise SystemExit(f"expected {expect} minions to say hi, got {len(returns)}; wrong: {sample}")
    return elapsed


def ping(config_dir: str, expect: int, deadline: float) -> None:
    """Until ``expect`` minions answer test.ping (their keys are auto-accepted as they come up)."""
    end = time.monotonic() + deadline
    answered: dict[str, object] = {}
    problem = ""
    while time.monotonic() < end:
        try:
            with client(config_dir) as local:  # a new client each try: the first may have read no key yet
                answered = local.cmd("*", "test.ping", timeout=5)
        except SaltException as error:  # the master is still starting (no socket, or no key yet)
            problem = f" (last: {error})"
        else:
            if sum(1 for ok in answered.values() if ok is True) >= expect:
                return
        time.sleep(1)  # the master or minions are still starting: let them, rather than spin the master
    raise SystemExit(f"only {len(answered)} of {expect} minions answered test.ping within {deadline:.0f} s{problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["ping", "bench"])
    parser.add_argument("--config", required=True, help="the master's configuration directory")
    parser.add_argument("--expect", type=int, required=True, help="how many minions must answer")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=300)
    args = parser.parse_args()
    if args.mode == "ping":
        ping(args.config, args.expect, args.deadline)
        return
    with client(args.config) as local:
        for _ in range(args.warmup):  # connections, the minions' first job of the kind, the master's caches
            echo_hi(local, args.expect)
        latencies = [echo_hi(local, args.expect) for _ in range(args.runs)]
    json.dump({"latencies": latencies}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
