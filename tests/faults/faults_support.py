"""What the process-fault tests (agent and manager killed, frozen, stopped; a simulated fleet) share: commands
that keep their own record of every start, the node list and audit log as seen through the API, and a
watcher that notes every moment a node read offline."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psutil
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.storm import REQUEST_TIMEOUT, Tally, writer
from tests.support import command_records, pid_alive, wait_until

FINAL_TASK = ("completed", "failed", "canceled")
"""Fleet task statuses that never change again."""


def recording_command(record: Path, go: Path, exit_code: int = 0, max_seconds: float = 120.0) -> str:
    """A shell command that appends ``start <pid>`` to ``record``, waits for the file ``go`` (at most
    ``max_seconds``), appends ``end <pid>`` and exits ``exit_code``. ``$$`` is the shell the agent spawned:
    the very pid the agent records for the command."""
    ticks = int(max_seconds * 10)
    return (
        f'echo "start $$" >> {record}; i=0; '
        f"while [ ! -e {go} ] && [ $i -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done; "
        f'echo "end $$" >> {record}; exit {exit_code}'
    )


def record_lines(record: Path, word: str = "start") -> list[int]:
    """The pids of the ``word`` lines of a command's own record (empty while it has none)."""
    try:
        lines = record.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [int(line.split()[1]) for line in lines if line.startswith(word + " ")]


def nodes(manager: Manager) -> dict[str, dict[str, Any]]:
    """GET /api/task/node by hostname."""
    answer = manager.get("/api/task/node")
    assert answer.status_code == 200, answer.text
    return {n["hostname"]: n for n in answer.json()["nodes"]}


def online(manager: Manager, hostname: str) -> bool:
    node = nodes(manager).get(hostname)
    return node is not None and node["status"] == 0


def audit(manager: Manager, action: str) -> list[dict[str, Any]]:
    """Every audit entry of ``action`` (e.g. node.offline), oldest first."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = manager.get(f"/api/audit?page={page}&page_size=1000")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found.extend(e for e in body["entries"] if e["action"] == action)
        if page * body["page_size"] >= body["total"]:
            return found[::-1]
        page += 1


def task(manager: Manager, task_id: str) -> dict[str, Any]:
    answer = manager.get(f"/api/tasks/{task_id}")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def create_task(manager: Manager, command: str, targets: list[str], timeout: int = 120) -> str:
    answer = manager.post("/api/tasks", {"name": "fault", "command": command, "targets": targets, "timeout": timeout})
    assert answer.status_code == 201, answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def wait_final(manager: Manager, task_id: str, timeout: float = 30.0, logs: str = "") -> dict[str, Any]:
    """The task once it reads final."""

    def final() -> dict[str, Any] | None:
        found = task(manager, task_id)
        return found if found["status"] in FINAL_TASK and found["finished_at"] else None

    found = wait_until(final, timeout=timeout, what=f"task {task_id} final{logs}")
    assert found is not None
    return found


def host_running(manager: Manager, task_id: str) -> bool:
    return bool(task(manager, task_id)["hosts"][0]["status"] == "running")


def persisted_command(agent: Agent, task_id: str) -> bool:
    """Whether the agent's own record of its commands (its journal, commands.jsonl) holds ``task_id`` with its pid:
    from then on a restarted agent knows the command (worker_agent/fleet_commands/runner.py saves it right after
    the spawn)."""
    rec = command_records(agent.data_dir).get(task_id)
    return bool(rec and rec.get("pid"))


def forget_command(agent: Agent, task_id: str) -> None:
    """Take ``task_id``'s lines out of the (stopped) agent's command journal: its data directory as a kill between
    the command's spawn and the save of its record leaves it."""
    journal = agent.data_dir / "commands.jsonl"
    kept = [line for line in journal.read_text().splitlines(keepends=True) if f'"task_id":"{task_id}"' not in line]
    journal.write_text("".join(kept))


def kill_pids(pids: list[int]) -> None:
    """SIGKILL whatever of ``pids`` still runs (teardown: nothing a test started may outlive it)."""
    for pid in pids:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@contextmanager
def manager_and_agent(tmp_path: Path, hostname: str, interval: float) -> Iterator[tuple[Manager, Agent, list[int]]]:
    """A manager and one agent, with a list where the test puts every pid its commands and components
    recorded: at the end the agent (thawed if frozen) and the manager stop and those pids are killed."""
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent = Agent(tmp_path, env, manager, hostname, interval)
    agent.start()
    leftovers: list[int] = []
    try:
        yield manager, agent, leftovers
    finally:
        if agent.alive():
            os.kill(agent.pid, signal.SIGCONT)
            agent.terminate()
        if manager.alive():
            manager.terminate()
        kill_pids(leftovers)


def quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else 0.0


class OfflineWatcher:
    """A thread reading GET /api/task/node every ``every`` seconds, noting each read of a watched node
    offline (status 1). Reads that fail (the manager is down) count as unanswered, not as offline."""

    def __init__(self, manager: Manager, hostnames: set[str] | None = None, every: float = 0.2) -> None:
        self.manager = manager
        self.hostnames = hostnames
        self.every = every
        self.reads = 0
        self.unanswered = 0
        self.offline: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="offline-watcher", daemon=True)

    def __enter__(self) -> OfflineWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                answer = session.get(self.manager.url + "/api/task/node", timeout=10)
                if answer.status_code != 200:
                    raise requests.RequestException(str(answer.status_code))
                listed = answer.json()["nodes"]
            except (requests.RequestException, ValueError):
                self.unanswered += 1
                self._stop.wait(self.every)
                continue
            self.reads += 1
            now = time.time()
            for node in listed:
                if node["status"] != 0 and (self.hostnames is None or node["hostname"] in self.hostnames):
                    self.offline.append((now, node["hostname"]))
            self._stop.wait(self.every)


def listed(manager: Manager, path: str, key: str, field_name: str, name: str = "storm-") -> set[str]:
    """Every ``field_name`` of a paged list whose items are named ``name``..."""
    found: set[str] = set()
    page = 1
    while True:
        answer = manager.get(f"{path}?name={name}&page={page}&page_size=1000")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found.update(item[field_name] for item in body[key])
        if page * body["page_size"] >= body["total"]:
            return found
        page += 1


class Writers:
    """``count`` threads running tests/storm.py's writer (a template, then a fleet task on every node, and so
    on), each keeping a Tally of what it was answered, until stop(). The writer runs in slices of
    SLICE_SECONDS; after a slice with no write answered (the manager is down) a thread pauses PAUSE_SECONDS
    rather than spin on a refused port."""

    SLICE_SECONDS = 0.25
    PAUSE_SECONDS = 0.2

    def __init__(self, manager: Manager, count: int) -> None:
        self.url = manager.url
        self.tallies = [Tally() for _ in range(count)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i, tally), daemon=True) for i, tally in enumerate(self.tallies)
        ]

    def _run(self, index: int, tally: Tally) -> None:
        while not self._stop.is_set():
            before = len(tally.templates) + len(tally.tasks)
            writer(self.url, index, time.monotonic() + self.SLICE_SECONDS, tally)
            if len(tally.templates) + len(tally.tasks) == before:
                self._stop.wait(self.PAUSE_SECONDS)

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 10)
        assert not any(t.is_alive() for t in self._threads), "a writer hung"

    def written(self) -> int:
        """Writes answered 2xx so far."""
        return sum(len(t.templates) + len(t.tasks) for t in self.tallies)

    def templates(self) -> set[str]:
        return {name for t in self.tallies for name in t.templates}

    def tasks(self) -> set[str]:
        return {task_id for t in self.tallies for task_id in t.tasks}

    def failures(self) -> int:
        return sum(sum(t.failures.values()) for t in self.tallies)

    def check_all_present(self, manager: Manager) -> None:
        """Every write answered 2xx is there (read through the API)."""
        missing_templates = self.templates() - listed(manager, "/api/templates", "templates", "name")
        missing_tasks = self.tasks() - listed(manager, "/api/tasks", "tasks", "task_id")
        assert not missing_templates and not missing_tasks, (
            f"answered 2xx but gone: {len(missing_templates)} templates {sorted(missing_templates)[:5]}, "
            f"{len(missing_tasks)} tasks {sorted(missing_tasks)[:5]}"
        )


def integrity_check(db_path: Path) -> str:
    """SQLite's own verdict on the database file ("ok" when sound)."""
    with closing(sqlite3.connect(db_path, timeout=30)) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows)


def launcher_tree(manager: Manager) -> dict[str, list[int]]:
    """The manager's processes by role: the launcher, gunicorn's master and workers, the private redis-server."""
    roles: dict[str, list[int]] = {"launcher": [manager.pid], "gunicorn": [], "workers": [], "redis": []}
    for child in psutil.Process(manager.pid).children():
        if child.name() == "redis-server":
            roles["redis"].append(child.pid)
        elif "gunicorn" in " ".join(child.cmdline()):
            roles["gunicorn"].append(child.pid)
            roles["workers"].extend(p.pid for p in child.children())
    assert roles["gunicorn"] and roles["redis"] and roles["workers"], roles
    return roles
