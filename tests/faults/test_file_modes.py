"""Fault: secrets on disk open to other local users (issue 10, item 7).

A real manager and agent run a deployment, a fleet task with a secret in its environment and a business
whose process component has a config file; then every file of theirs that holds a secret is 0600 and each
directory of corral's own 0700, while what the task and the component wrote keeps the usual umask. Made
0644 (directories 0755) while both are stopped, the files are 0600 again after a restart, each with a log
line; the manager's data directory, which it no longer knows to be its own, is only warned about.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.support import wait_until
from worker_agent.data_dir import PLAIN_ENTRIES, SECRET_DIRS, SECRET_FILES

pytestmark = pytest.mark.e2e

USUAL_UMASK = 0o022
"""The umask the test runs the manager and agent with: a task's files must come out 0644 under it."""

COMPONENT_SLEEP = 7391
DEPLOYMENT_SLEEP = 7392
"""Seconds the business component and the deployment's task sleep: how the teardown finds their processes."""

SECRET = "s3cret-env-value"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes(paths: list[Path]) -> dict[str, str]:
    """Each path's mode as text, so a failure shows all of them at once."""
    return {str(path): f"{mode(path):04o}" for path in paths}


@pytest.fixture
def usual_umask() -> Iterator[int]:
    """Run the test, and so the processes it starts, under the common 022 umask whatever the caller's."""
    old = os.umask(USUAL_UMASK)
    try:
        yield USUAL_UMASK
    finally:
        os.umask(old)


@pytest.fixture
def stack(tmp_path: Path, usual_umask: int) -> Iterator[tuple[Manager, Agent]]:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    agent = Agent(tmp_path, env, manager, "modes-1", 0.5)
    try:
        yield manager, agent
    finally:
        for proc in (agent, manager):
            if proc.alive():
                proc.terminate()
        _kill_sleepers()


def _kill_sleepers() -> None:
    """Never leave this test's payloads behind, whatever failed."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:-1] == ["sleep"] and cmdline[-1] in (str(COMPONENT_SLEEP), str(DEPLOYMENT_SLEEP)):
            try:
                proc.kill()
            except psutil.Error:
                pass


def online(manager: Manager) -> bool:
    answer = manager.get("/api/task/node")
    return answer.status_code == 200 and [n["status"] for n in answer.json()["nodes"]] == [0]


def start_both(manager: Manager, agent: Agent) -> None:
    """Start both and wait until this agent joined (the node may still read online from before a restart)."""
    log_from = len(agent.output()) if agent.log.exists() else 0
    manager.start()
    agent.start()
    wait_until(lambda: ": joined http" in agent.output()[log_from:], timeout=30, what=f"the join\n{agent.output()}")
    wait_until(lambda: online(manager), timeout=30, what=f"the node online\n{agent.output()[-3000:]}")


def business_state(manager: Manager, business_id: str) -> str:
    answer = manager.get(f"/api/businesses/{business_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    states = {body["status"], *(c["status"] for c in body["components"])}
    return states.pop() if len(states) == 1 else ""


def deployment_tasks_in(manager: Manager, dep_id: str, state: str) -> bool:
    answer = manager.get(f"/deployments/{dep_id}")
    assert answer.status_code == 200, answer.text
    return all(t["state"] == state for t in answer.json()["tasks"])


def run_everything(manager: Manager, work: Path) -> str:
    """A business with a config file, a deployment and a fleet task with a secret env; returns the deployment id."""
    business = {
        "business_id": "modes-biz",
        "business_name": "modes",
        "components": [
            {
                "component_id": "app",
                "component_name": "app",
                "type": "process",
                "command": f"echo made > made-by-component; exec sleep {COMPONENT_SLEEP}",
                "environment_variables": {"SECRET": SECRET},
                "config_files": [{"path": "/etc/app/app.conf", "content": f"password={SECRET}\n"}],
                "resource_requirements": {"cpu_cores": 0.1, "memory_mb": 16, "gpu": False},
                "affinity": {"require_gpu": False, "node_labels": {}},
            }
        ],
    }
    answer = manager.post("/api/businesses", business)
    assert answer.status_code == 201, answer.text
    wait_until(lambda: business_state(manager, "modes-biz") == "running", timeout=30, what="the business running")

    # An app instance too: the agent makes its app instance manager (records in apps.json, app-runs/) only for
    # a node that runs one, and its records hold the app's sealed secret.
    app = {"name": "modes-app", "toProcess": f"exec sleep {COMPONENT_SLEEP}", "secretEnvs": {"SECRET": SECRET}}
    answer = manager.post("/api/apps", app)
    assert answer.status_code == 201, answer.text
    wait_until(lambda: app_states(manager, "modes-app") == ["running"], timeout=30, what="the app running")

    template = {
        "name": "modes",
        "task_groups": [
            {"tasks": [{"name": "t", "config": {"command": f"echo made > made.txt; exec sleep {DEPLOYMENT_SLEEP}"}}]}
        ],
    }
    assert manager.post("/api/task/task_group", template).status_code == 200
    dep_id: str = manager.post("/api/task/task_group/deploy", {"name": "modes"}).json()["id"]
    wait_until(lambda: deployment_tasks_in(manager, dep_id, "RUNNING"), timeout=30, what="the deployment running")

    command = f'cd {work} && echo "$SECRET" > made.txt && mkdir made-dir'
    answer = manager.post(
        "/api/tasks?wait=60", {"name": "modes", "command": command, "targets": ["*"], "env": {"SECRET": SECRET}}
    )
    assert answer.status_code in (200, 201), answer.text
    [host] = answer.json()["hosts"]
    assert host["status"] == "succeeded", host
    return dep_id


def app_states(manager: Manager, name: str) -> list[str]:
    return [instance["state"] for instance in manager.get(f"/api/apps/{name}").json()["instances"]]


def stop_everything(manager: Manager, dep_id: str) -> None:
    assert manager.post("/api/businesses/modes-biz/stop").status_code == 200
    assert manager.post("/api/apps/modes-app/stop").status_code == 200
    assert manager.post("/api/task/task_group/stop", {"id": dep_id}).status_code == 200
    wait_until(lambda: business_state(manager, "modes-biz") == "stopped", timeout=30, what="the business stopped")
    wait_until(lambda: deployment_tasks_in(manager, dep_id, "STOPPED"), timeout=30, what="the deployment stopped")
    wait_until(lambda: app_states(manager, "modes-app") in ([], ["stopped"]), timeout=30, what="the app stopped")


def test_secret_files_are_owner_only_and_fixed_at_restart(tmp_path: Path, stack: tuple[Manager, Agent]) -> None:
    manager, agent = stack
    data, agent_dir = manager.db_path.parent, agent.data_dir
    redis_dir = data / "corral-redis"
    work = tmp_path / "work"
    work.mkdir()
    start_both(manager, agent)
    dep_id = run_everything(manager, work)

    # The manager's files: it made the data directory, so that is 0700 too.
    db = manager.db_path
    wal, shm = db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")
    # SQLite gives -wal and -shm the database file's mode: the manager's connections make them 0600.
    wait_until(lambda: wal.exists() and shm.exists(), timeout=20, what="the database's -wal and -shm")
    manager_files = [db, wal, shm, data / "join-token", redis_dir / "password"]
    manager_files.append(redis_dir / "redis.conf")
    manager_dirs = [data, redis_dir]
    # The agent's: its data directory is corral's own; each file that holds a secret, and the config file.
    config_file = agent_dir / "components" / "modes-biz" / "app" / "files" / "etc" / "app" / "app.conf"
    agent_files = [
        agent_dir / n for n in ("node-secret", "state.json", "commands.jsonl", "components.json", "apps.json")
    ]
    agent_files.append(config_file)
    agent_dirs = [agent_dir, *(agent_dir / n for n in ("tasks", "components", "command-reports", "apps", "app-runs"))]
    assert modes(manager_files + agent_files) == {str(p): "0600" for p in manager_files + agent_files}
    assert modes(manager_dirs + agent_dirs) == {str(p): "0700" for p in manager_dirs + agent_dirs}
    assert SECRET in (agent_dir / "components.json").read_text() and SECRET in config_file.read_text()
    # Everything the agent keeps in its data directory is known to the fix at start, secret or not.
    assert {p.name for p in agent_dir.iterdir()} <= {*SECRET_FILES, *SECRET_DIRS, *PLAIN_ENTRIES}

    # Tasks and components keep the usual umask (022 here): corral never imposes its own on what users run.
    [task_file] = (agent_dir / "tasks").glob("*/made.txt")
    assert (mode(work / "made.txt"), mode(work / "made-dir")) == (0o644, 0o755)
    assert mode(task_file) == 0o644 and mode(config_file.parents[2] / "made-by-component") == 0o644

    stop_everything(manager, dep_id)
    assert agent.terminate() == 0 and manager.terminate() == 0

    # What an older version left (or a careless copy made): every secret open to other users. (Config files
    # are not fixed one by one at start: components/, 0700 again, keeps everyone out; a deploy rewrites them.)
    loosened_files = [p for p in manager_files + agent_files if p.exists() and p != config_file]
    held_report = agent_dir / "command-reports" / ("0" * 32 + ".json")
    held_report.write_text("{}")
    loosened_files.append(held_report)
    for path in loosened_files:
        path.chmod(0o644)
    for path in manager_dirs + agent_dirs:
        path.chmod(0o755)
    manager_log, agent_log = len(manager.output()), len(agent.output())

    start_both(manager, agent)
    fixed_dirs = [p for p in manager_dirs + agent_dirs if p != data]
    assert modes(loosened_files) == {str(p): "0600" for p in loosened_files}
    assert modes(fixed_dirs) == {str(p): "0700" for p in fixed_dirs}
    # New -wal and -shm (a clean stop removes them) take the fixed database's mode.
    wait_until(lambda: wal.exists() and shm.exists(), timeout=20, what="the database's -wal and -shm")
    assert (mode(wal), mode(shm)) == (0o600, 0o600)

    logs = manager.output()[manager_log:] + agent.output()[agent_log:]
    for path in loosened_files:
        assert f"file {path} was mode 0644, open to other users: now 0600" in logs, path
    for path in fixed_dirs:
        assert f"directory {path} was mode 0755, open to other users: now 0700" in logs, path
    # The manager's data directory: at this start it existed already, so it is the user's; only a warning.
    assert mode(data) == 0o755
    assert f"data directory {data} is mode 0755, open to other users: left as it is" in logs
    assert f"directory {data} was mode" not in logs
    # The fixed files still work: the node joins with its secret, and a fleet task runs.
    answer = manager.post("/api/tasks?wait=60", {"name": "after", "command": "echo back", "targets": ["*"]})
    assert answer.status_code in (200, 201), answer.text
    assert [(h["status"], h["stdout"]) for h in answer.json()["hosts"]] == [("succeeded", "back\n")]


def test_the_default_data_directory_is_left_alone_with_a_warning(tmp_path: Path, usual_umask: int) -> None:
    """As `manager --db-path resource_monitor.db` run in a user's directory: files 0600, the directory untouched."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.db_path = home / "resource_monitor.db"
    manager.args[manager.args.index("--db-path") + 1] = str(manager.db_path)
    manager.start()
    try:
        assert mode(home) == 0o755
        assert mode(manager.db_path) == 0o600 and mode(home / "join-token") == 0o600
        assert mode(home / "corral-redis") == 0o700
        assert f"data directory {home} is mode 0755, open to other users: left as it is" in manager.output()
        assert "was mode" not in manager.output()  # nothing of its own needed fixing
    finally:
        assert manager.terminate() == 0
