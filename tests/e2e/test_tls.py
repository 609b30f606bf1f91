"""TLS end to end: a manager serving HTTPS with a certificate of a CA made at test time (tests/tls_support.py);
agents and the CLI verify it with --ca-bundle and refuse an unknown certificate with one clear line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from shared import api, keys, private_redis
from shared.defaults import PROTOCOL_VERSION
from tests.e2e.harness import BIN, Agent, isolated_env
from tests.support import free_port, wait_until
from tests.tls_support import TlsFiles, TlsManager, tls_files

__all__ = ["tls_files"]  # the fixture, imported for pytest

pytestmark = pytest.mark.e2e


def online(manager: TlsManager, hostname: str) -> bool:
    nodes = manager.get("/api/task/node").json()["nodes"]
    return any(n["hostname"] == hostname and n["status"] == 0 for n in nodes)


def agent_with(tmp_path: Path, env: dict[str, str], manager: TlsManager, name: str, *extra: str) -> Agent:
    agent = Agent(tmp_path, env, manager, name, 0.5)
    agent.args += list(extra)
    agent.start()
    return agent


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True, text=True, timeout=20)


def test_https_manager_and_an_agent_with_the_ca_run_a_command(tmp_path: Path, tls_files: TlsFiles) -> None:
    env = isolated_env(tmp_path)
    manager = TlsManager(tmp_path, env, tls_files)
    manager.start()
    try:
        wait_until(lambda: "manager listening on https://" in manager.output(), timeout=10, what="the https banner")
        ok = curl("--cacert", str(tls_files.ca), manager.url + "/healthz")
        assert ok.returncode == 0 and '"ok"' in ok.stdout, ok.stderr
        refused = curl("--cacert", str(tls_files.other_ca), manager.url + "/healthz")
        assert refused.returncode == 60, refused  # curl's "peer certificate cannot be authenticated"
        # Plain HTTP on the TLS port gets no answer: the manager takes it for a bad handshake and closes.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{manager.port}/healthz", timeout=5)
        agent = agent_with(tmp_path, env, manager, "tls-1", "--ca-bundle", str(tls_files.ca))
        try:
            wait_until(lambda: online(manager, "tls-1"), timeout=30, what=f"agent online\n{agent.output()}")
            ran = manager.post("/api/tasks?wait=20", {"name": "t", "command": "echo over-tls", "targets": ["tls-1"]})
            assert ran.status_code in (200, 201) and ran.json()["status"] == "completed", ran.text
        finally:
            assert agent.terminate() == 0
        assert manager.healthy()
    finally:
        assert manager.terminate() == 0


def test_agents_without_the_ca_or_with_another_are_refused_with_one_clear_line(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    env = isolated_env(tmp_path)
    env.pop("CORRAL_CA_BUNDLE", None)
    manager = TlsManager(tmp_path, env, tls_files)
    manager.start()
    wrong = agent_with(tmp_path, env, manager, "wrong-ca", "--ca-bundle", str(tls_files.other_ca))
    none = agent_with(tmp_path, env, manager, "no-ca")
    try:
        line = f"certificate verify failed for {manager.url}: pass --ca-bundle"
        for agent in (wrong, none):
            wait_until(lambda a=agent: line in a.output(), timeout=20, what=f"refusal in the log\n{agent.output()}")
            assert agent.alive(), "an agent keeps retrying, as after any failed join"
            assert "Traceback" not in agent.output()
        assert manager.get("/api/task/node").json()["nodes"] == []
    finally:
        assert wrong.terminate() == 0
        assert none.terminate() == 0
        assert manager.terminate() == 0


def test_cli_verifies_the_manager_with_its_ca_bundle(tmp_path: Path, tls_files: TlsFiles) -> None:
    env = isolated_env(tmp_path)
    env.pop("CORRAL_CA_BUNDLE", None)
    env["CORRAL_CONFIG"] = str(tmp_path / "cli.toml")  # none: the user's own config must not count
    manager = TlsManager(tmp_path, env, tls_files)
    manager.start()

    def corral(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        command = [str(BIN / "corral"), "--manager-url", manager.url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30, env={**env, **extra_env})

    try:
        for refused in (corral("nodes"), corral("--ca-bundle", str(tls_files.other_ca), "nodes")):
            assert refused.returncode != 0
            assert refused.stderr.strip().splitlines() == [
                f"Error: certificate verify failed for {manager.url}: pass --ca-bundle (or CORRAL_CA_BUNDLE) "
                "naming the CA that signed it"
            ], refused.stderr
        assert corral("--ca-bundle", str(tls_files.ca), "nodes").returncode == 0
        assert corral("nodes", CORRAL_CA_BUNDLE=str(tls_files.ca)).returncode == 0
        (tmp_path / "cli.toml").write_text(f'ca-bundle = "{tls_files.ca}"\n')
        assert corral("nodes").returncode == 0
    finally:
        assert manager.terminate() == 0


@pytest.mark.parametrize("which", ["cert", "key"])
def test_manager_refuses_half_or_unreadable_tls_flags_before_starting(
    tmp_path: Path, tls_files: TlsFiles, which: str
) -> None:
    env = isolated_env(tmp_path)
    manager = [str(BIN / "manager"), "--port", str(free_port()), "--db-path", str(tmp_path / "db.sqlite")]
    half = ["--tls-cert", str(tls_files.cert)] if which == "cert" else ["--tls-key", str(tls_files.key)]
    run = subprocess.run([*manager, *half], capture_output=True, text=True, timeout=30, env=env)
    assert run.returncode == 2
    assert "--tls-cert and --tls-key go together" in run.stderr
    missing = tmp_path / "missing.pem"
    pair = {"cert": str(tls_files.cert), "key": str(tls_files.key), which: str(missing)}
    run = subprocess.run(
        [*manager, "--tls-cert", pair["cert"], "--tls-key", pair["key"]],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert run.returncode == 2
    assert "cannot use --tls-cert" in run.stderr and "Traceback" not in run.stderr, run.stderr
    # Both, but no CA for the manager to verify its TLS-only private Redis with.
    both = ["--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    run = subprocess.run([*manager, *both], capture_output=True, text=True, timeout=30, env=env)
    assert run.returncode == 2 and "give --tls-ca" in run.stderr, run.stderr
    assert not (tmp_path / "db.sqlite").exists(), "nothing starts before the flags are checked"


def test_private_redis_is_tls_only_and_agents_work_it_over_rediss(tmp_path: Path, tls_files: TlsFiles) -> None:
    env = isolated_env(tmp_path)
    manager = TlsManager(tmp_path, env, tls_files)
    manager.start()
    try:
        plain_url = manager.redis_url()
        plain = redis_lib.Redis.from_url(plain_url, socket_timeout=5, socket_connect_timeout=5)
        with pytest.raises(redis_lib.exceptions.ConnectionError):
            plain.ping()  # the port speaks TLS only
        plain.close()
        secure_url = plain_url.replace("redis://", "rediss://", 1)
        unverified = redis_lib.Redis.from_url(secure_url, ssl_ca_certs=str(tls_files.other_ca), socket_timeout=5)
        with pytest.raises(redis_lib.exceptions.ConnectionError, match="certificate verify failed"):
            unverified.ping()
        verified = redis_lib.Redis.from_url(secure_url, ssl_ca_certs=str(tls_files.ca), socket_timeout=5)
        assert verified.ping()
        verified.close()

        agent = agent_with(tmp_path, env, manager, "rediss-1", "--ca-bundle", str(tls_files.ca))
        try:
            wait_until(lambda: online(manager, "rediss-1"), timeout=30, what=f"agent online\n{agent.output()}")
            ran = manager.post(
                "/api/tasks?wait=20", {"name": "t", "command": "echo via-rediss", "targets": ["rediss-1"]}
            )
            assert ran.status_code in (200, 201) and ran.json()["status"] == "completed", ran.text
        finally:
            assert agent.terminate() == 0
        # The agent got a rediss:// URL as its node's own Redis user (services/nodes/redis_users.py), verified
        # with its --ca-bundle: what the join hands out.
        token = (manager.db_path.parent / "join-token").read_text().strip()
        joined = manager.post(
            api.JOIN_PATH,
            {
                "node_id": "n-tls",
                "hostname": "n-tls",
                "ip": "127.0.0.1",
                "interval": 5,
                "protocol": PROTOCOL_VERSION,
                "node_secret": "secret-of-n-tls-in-this-test",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert joined.status_code == 200, joined.text
        node_url = joined.json()["redis_url"]
        assert node_url.startswith("rediss://") and "default" not in node_url
        as_node = redis_lib.Redis.from_url(node_url, ssl_ca_certs=str(tls_files.ca), socket_timeout=5)
        as_node.set(keys.node_prefix("n-tls") + "probe", "1")
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            as_node.config_get("requirepass")
        as_node.close()
        # Every Redis client of the manager verified the TLS-only Redis, the rate limiter's storage included
        # (it would fall back to counting in memory, with this warning, had it failed to connect).
        assert "Rate limit storage unreachable" not in manager.output()
        # corral dashboard --data-dir finds it as it is: rediss://, verified with the manager's CA.
        recorded = private_redis.recorded_url(manager.db_path.parent)
        assert recorded.startswith("rediss://") and "ssl_ca_certs=" in recorded
        from_dir = redis_lib.Redis.from_url(recorded, socket_timeout=5)
        assert from_dir.ping()
        from_dir.close()
    finally:
        assert manager.terminate() == 0
