"""The agent's component and app instance managers are made at their first use, unless the data directory holds
their records (worker_agent.on_demand, Agent.__init__)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from worker_agent.agent import Agent
from worker_agent.data_dir import APPS_FILE, COMPONENTS_FILE
from worker_agent.on_demand import OnDemand

CHECK = """
import sys
import worker_agent.cli, worker_agent.jobs
for name in ("worker_agent.components.manager", "worker_agent.app_instances.manager"):
    assert name not in sys.modules, name + " was imported at the agent's start"
print("ok")
"""


def test_the_agents_imports_leave_the_managers_modules_unloaded() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_made_once_whoever_asks_and_prepared_once_whenever_made() -> None:
    made: list[object] = []
    prepared: list[object] = []
    gate = threading.Event()

    def make() -> object:
        gate.wait(5)
        made.append(object())
        return made[-1]

    lazy: OnDemand[object] = OnDemand(make)
    assert lazy.made is None
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(lazy.get())) for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert len(made) == 1 and got == made * 4 and lazy.made is made[0]
    lazy.prepare_with(prepared.append)  # made already: prepared now
    lazy.prepare_with(prepared.append)  # asked again: once more, as a second recovery would
    assert prepared == made * 2

    later: OnDemand[object] = OnDemand(object)
    later.prepare_with(prepared.append)  # not made: prepared as it is made
    assert prepared == made * 2
    value = later.get()
    assert prepared == [*made * 2, value] and later.get() is value


def test_an_agent_makes_a_manager_at_once_when_its_records_are_in_the_data_dir(tmp_path: Path) -> None:
    fresh = Agent.from_redis("redis://127.0.0.1:1/0", tmp_path / "fresh")
    try:
        assert fresh._components.made is None and fresh._instances.made is None
        assert fresh.status()["app_instances_running"] == 0
        assert fresh.components is fresh._components.made is not None  # made at its first use
    finally:
        fresh.components.close()
        fresh._lock.release()
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / COMPONENTS_FILE).write_text("{}")
    (tmp_path / "held" / APPS_FILE).write_text("{}")
    held = Agent.from_redis("redis://127.0.0.1:1/0", tmp_path / "held")
    try:
        assert held._components.made is not None and held._instances.made is not None
    finally:
        held.components.close()
        held.instances.close()
        held._lock.release()
