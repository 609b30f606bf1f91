"""`agent --config config.yaml`: a real agent joins a real manager from its file alone; flags over the file;
bad files refused with exit code 2 naming the file and key; --print-config hides the join token."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from shared.paths import local_join_token_path
from tests.e2e.harness import BIN, Manager, Proc, isolated_env
from tests.support import wait_until


def run_agent(*args: str) -> subprocess.CompletedProcess[str]:
    """An `agent` that must end by itself (a refusal, --print-config)."""
    return subprocess.run([str(BIN / "agent"), *args], capture_output=True, text=True, timeout=30)


def online_nodes(manager: Manager) -> list[dict[str, Any]]:
    answer = manager.get("/api/nodes")
    assert answer.status_code == 200, answer.text
    return [node for node in answer.json()["nodes"] if node["status"] == "online"]


def test_an_agent_started_with_only_config_joins_the_manager(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    manager = Manager(tmp_path, env)
    manager.start()
    agent: Proc | None = None
    try:
        token = (Path(env["CORRAL_RUNTIME_DIR"]) / local_join_token_path(manager.port).name).read_text().strip()
        config = tmp_path / "agent.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "manager-url": manager.url,
                    "hostname": "from-config",
                    "interval": 0.5,
                    "port": 0,
                    "token": token,
                    "data_dir": str(tmp_path / "agent-data"),
                    "tag": ["ssd", "web"],
                    "label": ["zone=a"],
                }
            )
        )
        # The runtime dir holds no token for this agent: only the file's can admit it.
        agent_env = dict(env, CORRAL_RUNTIME_DIR=str(tmp_path / "agent-run"))
        agent = Proc([str(BIN / "agent"), "--config", str(config)], tmp_path / "agent.log", agent_env)
        agent.start()
        [node] = wait_until(lambda: online_nodes(manager), timeout=30, what="the agent online")
        assert node["hostname"] == "from-config"
        assert node["tags"] == ["ssd", "web"] and node["labels"] == {"zone": "a"}
        assert (tmp_path / "agent-data" / "node-id").read_text().strip() == node["id"]
        assert token not in agent.output()
        # The agent runs work, not only heartbeats.
        task = manager.post("/api/tasks?wait=30", {"name": "cfg", "command": "echo hi", "targets": ["from-config"]})
        assert task.status_code == 201 and task.json()["hosts"][0]["stdout"] == "hi\n", task.text
    finally:
        if agent is not None and agent.alive():
            assert agent.terminate() == 0, agent.output()
        manager.terminate()


def test_flags_win_and_print_config_hides_the_token(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "hostname: from-file\ninterval: 2\ntoken: join-secret\nredis-url: redis://:redis-secret@h:6379/0\ntag: [a]\n"
    )
    result = run_agent("--config", str(config), "--hostname", "from-flag", "--tag", "b", "--print-config")
    assert result.returncode == 0, result.stderr
    assert "join-secret" not in result.stdout and "redis-secret" not in result.stdout
    shown = yaml.safe_load(result.stdout)
    assert shown["hostname"] == "from-flag" and shown["interval"] == 2.0
    assert shown["token"] == "***" and shown["redis-url"] == "redis://:***@h:6379/0"
    assert shown["tag"] == ["a", "b"]  # a repeatable flag adds to the file's list, as it adds to CORRAL_TAGS
    # --token-file on the command line sets aside the file's token: the flag wins.
    shown = yaml.safe_load(run_agent("--config", str(config), "--token-file", "/t", "--print-config").stdout)
    assert shown["token"] is None and shown["token-file"] == "/t"


def test_bad_files_exit_2_naming_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    for content, message in [
        ("manager_url: http://m:8080\nintervall: 5\n", "unknown key 'intervall' (agent has no --intervall; known"),
        ("interval: fast\n", "key 'interval' must be a number, got 'fast'"),
        ("tag: ssd\n", "key 'tag' must be a list of strings, got 'ssd'"),
        ("data-dir: [a]\n", "key 'data-dir' must be a string, got ['a']"),
    ]:
        config.write_text(content)
        result = run_agent("--config", str(config))
        assert result.returncode == 2, result.stderr
        assert f"agent: error: config file {config}: {message}" in result.stderr, result.stderr
    result = run_agent("--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert f"agent: error: cannot read config file {tmp_path / 'missing.yaml'}" in result.stderr
