"""A real manager (gunicorn, private Redis) and real agents, and the real `corral` console script run against them."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.e2e.harness import BIN, Agent, Manager, isolated_env
from tests.support import wait_until

INTERVAL = 0.5
"""Agent heartbeat interval: a stopped agent reads offline after three of them."""

HOST = "cli-a"
"""Hostname of the stack's agent."""


class Stack:
    """A manager and its agents, and a way to run `corral` against them."""

    def __init__(self, tmp: Path, manager: Manager, agents: list[Agent], env: dict[str, str]) -> None:
        self.tmp = tmp
        self.manager = manager
        self.agents = agents
        self.env = env

    def cli_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        env["CORRAL_URL"] = self.manager.url
        env["XDG_CONFIG_HOME"] = str(self.tmp / "config")  # never the user's own config file
        env.pop("CORRAL_CONFIG", None)
        env.update(extra)
        return env

    def corral(
        self, *args: str, timeout: float = 60, input_text: str | None = None, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `corral ARGS` (``extra`` are environment variables, ``input_text`` its stdin)."""
        return subprocess.run(
            [str(BIN / "corral"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.cli_env(**extra),
            input=input_text,
        )

    def nodes(self) -> list[dict[str, object]]:
        """GET /api/nodes straight from the manager (not through the CLI under test)."""
        nodes: list[dict[str, object]] = self.manager.get("/api/nodes").json()["nodes"]
        return nodes

    def start_agent(self, hostname: str, workdir: Path) -> tuple[Agent, str]:
        """Another agent, its data dir (so its node id) under ``workdir``; returns it and its node id once online."""
        workdir.mkdir(parents=True, exist_ok=True)
        known = {n["id"] for n in self.nodes()}
        agent = Agent(workdir, self.env, self.manager, hostname, INTERVAL)
        self.agents.append(agent)
        agent.start()
        joined = wait_until(
            lambda: [n for n in self.nodes() if n["id"] not in known and n["status"] == "online"],
            timeout=30,
            what=f"a new node {hostname} online",
        )
        return agent, str(joined[0]["id"])


def stop_all(manager: Manager, agents: list[Agent], tmp: Path) -> None:
    for agent in agents:
        if agent.alive():
            agent.terminate()
    if manager.alive():
        manager.terminate()
    for path in tmp.rglob("agent-*/state.json"):  # never leave a test's sleepers behind, whatever failed
        for pid in (int(p) for p in re.findall(r'"pid":\s*(\d+)', path.read_text())):
            try:
                for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
                    proc.kill()
            except psutil.Error:
                pass


@contextmanager
def running_stack(tmp: Path, hostname: str = HOST) -> Iterator[Stack]:
    """A manager and one agent called ``hostname``, online; everything stopped afterwards."""
    env = isolated_env(tmp)
    manager = Manager(tmp, env)
    manager.start()
    agent = Agent(tmp, env, manager, hostname, INTERVAL)
    stack = Stack(tmp, manager, [agent], env)
    agent.start()
    try:
        wait_until(
            lambda: any(
                n["hostname"] == hostname and n["status"] == 0 for n in manager.get("/api/task/node").json()["nodes"]
            ),
            timeout=30,
            what=f"{hostname} online",
        )
        yield stack
    finally:
        stop_all(manager, stack.agents, tmp)


def ok(result: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def result_row(stdout: str, node: str) -> list[str]:
    rows = [line.split() for line in stdout.splitlines() if line.startswith(node + " ") and " | " not in line]
    assert rows, f"no result row for {node} in:\n{stdout}"
    return rows[0]
