"""The floor under the agent's health-check cost: the CPU that 100 HTTP checks a second cost one bare Python
thread on this machine, with nothing of the agent around them.

One thread, one selector, a new loopback TCP connection per check (as the agent's checks and Kubernetes'
probes make: a kept-alive connection would hold a worker of a single-threaded app), a GET, the status line
read, the connection closed. ``raw`` parses the status line by hand; ``h11`` speaks HTTP through h11 (what a
correct client would use). Compare with bench_apps.py part 4, which measures the agent doing the same checks.

Usage: .venv/bin/python bench/health_floor.py [--checks 100] [--window 15] [--mode raw|h11]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine  # noqa: E402  (bench/common.py)

from tests.support import free_port, wait_until  # noqa: E402

SERVER = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "app_payloads" / "http_server.py"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: corral-health\r\nConnection: close\r\n\r\n"


class Prober:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.selector = selectors.DefaultSelector()
        self.ok = self.bad = 0

    def start(self, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        state: dict[str, Any] = {"sock": sock, "sent": False, "buffer": b""}
        if self.mode == "h11":
            import h11

            state["conn"] = h11.Connection(h11.CLIENT)
        self.selector.register(sock, selectors.EVENT_WRITE, state)

    def _finish(self, state: dict[str, Any], good: bool) -> None:
        self.selector.unregister(state["sock"])
        state["sock"].close()
        self.ok += good
        self.bad += not good

    def _io(self, state: dict[str, Any]) -> None:
        sock = state["sock"]
        if not state["sent"]:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return self._finish(state, False)
            if self.mode == "h11":
                import h11

                conn = state["conn"]
                headers = [("Host", "127.0.0.1"), ("User-Agent", "corral-health"), ("Connection", "close")]
                data = conn.send(h11.Request(method="GET", target="/", headers=headers))
                data += conn.send(h11.EndOfMessage())
            else:
                data = REQUEST
            sock.send(data)
            state["sent"] = True
            self.selector.modify(sock, selectors.EVENT_READ, state)
            return None
        data = sock.recv(65536)
        if self.mode == "h11":
            import h11

            conn = state["conn"]
            conn.receive_data(data)
            event = conn.next_event()
            if isinstance(event, h11.Response):
                return self._finish(state, 200 <= event.status_code < 400)
            if not data:
                return self._finish(state, False)
            return None
        state["buffer"] += data
        if b"\r\n" in state["buffer"] or not data:
            line = state["buffer"].split(b"\r\n", 1)[0].split()
            return self._finish(state, len(line) > 1 and line[1][:1] in (b"2", b"3"))
        return None

    def run(self, ports: list[int], window: float) -> float:
        """Check every port once a second, spread over the second, for ``window`` seconds; CPU seconds used."""
        before = os.times()
        began = time.monotonic()
        due = [began + i / len(ports) for i in range(len(ports))]
        while time.monotonic() - began < window:
            now = time.monotonic()
            for i, port in enumerate(ports):
                if due[i] <= now:
                    due[i] += 1.0
                    self.start(port)
            for key, _events in self.selector.select(max(0.0, min(due) - time.monotonic())):
                self._io(key.data)
        after = os.times()
        return after.user - before.user + after.system - before.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--mode", choices=("raw", "h11"), default="raw")
    args = parser.parse_args()
    print(machine())
    ports = [free_port() for _ in range(args.checks)]
    servers = [subprocess.Popen([sys.executable, str(SERVER), "corral-bench-app", str(p)]) for p in ports]
    try:
        for port in ports:
            wait_until(lambda port=port: _accepts(port), timeout=30, what=f"the app on port {port}")
        prober = Prober(args.mode)
        cpu = prober.run(ports, args.window)
        print(
            f"health floor ({args.mode}): {args.checks} HTTP checks a second in one thread, over {args.window:.0f} s: "
            f"{cpu / args.window * 100:.2f}% of a core, {cpu / max(prober.ok, 1) * 1e6:.0f} us a check "
            f"({prober.ok} answered 2xx/3xx, {prober.bad} not)"
        )
    finally:
        for server in servers:
            server.kill()
            server.wait()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
