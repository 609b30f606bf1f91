"""An instance's health checks (document 003 §5.2.1 ``healthChecks``), run by the agent on its own node:
HTTP (GET ``path`` on the port at ``port_index``, healthy on 200-399), TCP (a connection is accepted) or
COMMAND (``/bin/sh -c command`` in the instance's directory and environment exits 0).

Each check waits ``initial_delay_seconds`` after the process started, then runs every ``interval_seconds`` with
``timeout_seconds``; ``max_consecutive_failures`` failures in a row of any check get the instance restarted.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.states import AppHealth, HealthCheckProtocol

from .. import process_tree

ANSWER_CHARS = 200
"""Longest answer kept of one check (a command's first output line, an error)."""


@dataclass
class CheckResult:
    ok: bool
    answer: str


def run_check(check: dict[str, Any], ports: list[int], cwd: Path, env: Mapping[str, str]) -> CheckResult:
    """Run one check once (blocks up to its timeout)."""
    protocol = check["protocol"]
    timeout = float(check["timeout_seconds"])
    if protocol == HealthCheckProtocol.COMMAND:
        return _command(check["command"], cwd, env, timeout)
    index = int(check["port_index"])
    if index >= len(ports):
        return CheckResult(False, f"no port at index {index}")
    if protocol == HealthCheckProtocol.HTTP:
        return _http(ports[index], check["path"] or "/", timeout)
    return _tcp(ports[index], timeout)


def _http(port: int, path: str, timeout: float) -> CheckResult:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path if path.startswith("/") else "/" + path, headers={"User-Agent": "corral-health"})
        response = conn.getresponse()
        response.read(64 * 1024)
        return CheckResult(200 <= response.status < 400, f"HTTP {response.status}")
    except (OSError, http.client.HTTPException) as exc:
        return CheckResult(False, _error(exc))
    finally:
        conn.close()


def _tcp(port: int, timeout: float) -> CheckResult:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return CheckResult(True, "connected")
    except OSError as exc:
        return CheckResult(False, _error(exc))


def _command(command: str, cwd: Path, env: Mapping[str, str], timeout: float) -> CheckResult:
    try:
        proc = process_tree.popen_in_session(["/bin/sh", "-c", command], cwd, env, subprocess.PIPE, subprocess.STDOUT)
    except OSError as exc:
        return CheckResult(False, _error(exc))
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process_tree.kill(process_tree.collect_tree(proc.pid, proc.pid), proc.pid)
        proc.communicate()
        return CheckResult(False, f"timed out after {timeout:g} s")
    first = next((line for line in out.decode(errors="replace").splitlines() if line.strip()), "")
    answer = f"exit {proc.returncode}" + (f": {first}" if first else "")
    return CheckResult(proc.returncode == 0, answer[:ANSWER_CHARS])


def _error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return (str(exc) or type(exc).__name__)[:ANSWER_CHARS]


@dataclass
class CheckState:
    """When one check runs next and how many times in a row it failed."""

    next_at: float
    failures: int = 0
    last_ok: bool | None = None


@dataclass
class HealthChecks:
    """The checks of one running process: which are due, and what they found."""

    checks: list[dict[str, Any]]
    states: list[CheckState] = field(default_factory=list)

    @classmethod
    def fresh(cls, checks: list[dict[str, Any]], started: float) -> HealthChecks:
        """Checks of a process started at ``started`` (wall time): each after its initial delay."""
        return cls(checks, [CheckState(started + float(c["initial_delay_seconds"])) for c in checks])

    @classmethod
    def resumed(cls, checks: list[dict[str, Any]], failures: list[int], now: float, started: float) -> HealthChecks:
        """The checks of an adopted process, with the failures in a row its record kept."""
        found = cls.fresh(checks, started)
        for state, count in zip(found.states, failures, strict=False):
            state.failures = count
            state.next_at = max(state.next_at, now)
        return found

    def failures(self) -> list[int]:
        return [s.failures for s in self.states]

    def due(self, now: float) -> list[int]:
        return [i for i, s in enumerate(self.states) if now >= s.next_at]

    def next_at(self) -> float | None:
        """When the next check falls due (None without checks)."""
        return min((s.next_at for s in self.states), default=None)

    def record(self, index: int, result: CheckResult, now: float) -> int:
        """Take one result; returns the check's failures in a row."""
        state = self.states[index]
        state.next_at = now + float(self.checks[index]["interval_seconds"])
        state.failures = 0 if result.ok else state.failures + 1
        state.last_ok = result.ok
        return state.failures

    def exhausted(self, index: int) -> bool:
        """Whether check ``index`` failed its max_consecutive_failures in a row."""
        return self.states[index].failures >= int(self.checks[index]["max_consecutive_failures"])

    def health(self, previous: str) -> str:
        """Healthy when every check that ran passed last, unhealthy when one failed last; else ``previous``."""
        if any(s.last_ok is False for s in self.states):
            return AppHealth.UNHEALTHY
        if self.states and all(s.last_ok for s in self.states):
            return AppHealth.HEALTHY
        return previous
