"""`manager --config config.yaml`: real manager processes started from a YAML file; flags over the file over
the environment; bad files refused with exit code 2 naming the file and key; --print-config hides secrets."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.e2e.harness import BIN, Proc, isolated_env
from tests.support import free_port, wait_until


def write_config(path: Path, **values: object) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def answers(port: int, token: str | None = None) -> int | None:
    """The status code of GET /api/nodes on ``port``, None when nothing answers there."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/nodes", headers=headers, timeout=2).status_code
    except requests.ConnectionError:
        return None


def run_manager(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A `manager` that must end by itself (a refusal, --print-config)."""
    return subprocess.run([str(BIN / "manager"), *args], capture_output=True, text=True, timeout=30, cwd=cwd)


@pytest.fixture
def managers() -> Iterator[list[Proc]]:
    """Managers a test started; each is stopped at the end."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.alive():
            assert proc.terminate() == 0, proc.output()


def start(tmp_path: Path, managers: list[Proc], env: dict[str, str], *args: str) -> Proc:
    proc = Proc([str(BIN / "manager"), *args], tmp_path / "manager.log", env)
    proc.start()
    managers.append(proc)
    return proc


def test_a_manager_started_with_only_config_serves_on_the_files_port_with_the_files_token(
    tmp_path: Path, managers: list[Proc]
) -> None:
    port = free_port()
    db_path = tmp_path / "state" / "resource_monitor.db"
    config = write_config(tmp_path / "config.yaml", port=port, api_token="from-file", **{"db-path": str(db_path)})
    env = isolated_env(tmp_path)
    env["CORRAL_API_TOKEN"] = "from-env"  # the file wins over the environment
    proc = start(tmp_path, managers, env, "--config", str(config))
    wait_until(lambda: answers(port) is not None, timeout=30, what=f"manager on {port}\n{proc.output()}")
    assert answers(port) == 401
    assert answers(port, "from-env") == 401
    assert answers(port, "from-file") == 200
    assert db_path.is_file()  # db-path came from the file too


def test_a_flag_wins_over_the_file(tmp_path: Path, managers: list[Proc]) -> None:
    file_port, flag_port = free_port(), free_port()
    config = write_config(
        tmp_path / "config.yaml", port=file_port, **{"db-path": str(tmp_path / "data" / "resource_monitor.db")}
    )
    token_file = tmp_path / "token"
    token_file.write_text("from-token-file\n")
    # --api-token-file on the command line sets aside the file's api-token: the flag wins either way.
    config.write_text(config.read_text() + "api-token: from-config\n")
    env = isolated_env(tmp_path)
    proc = start(
        tmp_path, managers, env, "--config", str(config), "--port", str(flag_port), "--api-token-file", str(token_file)
    )
    wait_until(lambda: answers(flag_port) is not None, timeout=30, what=f"manager on {flag_port}\n{proc.output()}")
    assert answers(file_port) is None
    assert answers(flag_port, "from-config") == 401
    assert answers(flag_port, "from-token-file") == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot: 8080\n", "unknown key 'prot' (manager has no --prot; known keys: agent-redis-url, alert-secret-file,"),
        ("port: eighty\n", "key 'port' must be an integer, got 'eighty'"),
        ("port: true\n", "key 'port' must be an integer, got True"),
        ("workers: 2.5\n", "key 'workers' must be an integer, got 2.5"),
        ("host: 127\n", "key 'host' must be a string, got 127"),
        ("log-level: LOUD\n", "key 'log-level' must be a string (one of DEBUG, INFO, WARNING, ERROR), got 'LOUD'"),
        ("port: 1\nport-x: [\n", "is not valid YAML"),
        ("- port\n", "must be a mapping of flag names to values"),
        ("api-token: a\napi_token: b\n", "'api-token' and 'api_token' are the same key"),
        ("config: other.yaml\n", "unknown key 'config'"),
        ("!!python/object/apply:os.system [touch pwned]\n", "is not valid YAML"),
    ],
)
def test_a_bad_file_exits_2_naming_the_file_and_the_key(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(content)
    result = run_manager("--config", str(config), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"manager: error: config file {config}" in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "pwned").exists()  # safe_load builds no Python object
    assert not (tmp_path / "resource_monitor.db").exists()  # refused before anything started


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_manager("--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert f"manager: error: cannot read config file {tmp_path / 'nope.yaml'}: " in result.stderr
    assert "No such file or directory" in result.stderr


def test_print_config_shows_the_effective_settings_with_secrets_hidden(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml",
        port=9090,
        api_token="very-secret-token",
        workers=3,
        **{
            "redis-url": "redis://:redis-password@10.0.0.5:6379/0",
            "sftp-host": "sftp://deploy:sftp-password@files:22/images/",
            "db-url": "postgresql://corral:db-password@db.example:5432/corral",
        },
    )
    result = run_manager("--config", str(config), "--workers", "4", "--print-config")
    assert result.returncode == 0, result.stderr
    for secret in ("very-secret-token", "redis-password", "sftp-password", "db-password"):
        assert secret not in result.stdout
    shown = yaml.safe_load(result.stdout)
    assert shown["port"] == 9090 and shown["workers"] == 4 and shown["host"] == "127.0.0.1"
    assert shown["api-token"] == "***"
    assert shown["redis-url"] == "redis://:***@10.0.0.5:6379/0"
    assert shown["sftp-host"] == "sftp://deploy:***@files:22/images/"
    assert shown["db-url"] == "postgresql://corral:***@db.example:5432/corral"
    assert shown["agent-redis-url"] is None and shown["log-level"] == "INFO"
    # What it prints is itself a config file the manager reads (secrets aside).
    shown.pop("api-token")
    shown.pop("redis-url")
    shown.pop("sftp-host")
    shown.pop("db-url")
    again = run_manager("--config", str(write_config(tmp_path / "again.yaml", **shown)), "--print-config")
    assert again.returncode == 0 and yaml.safe_load(again.stdout)["workers"] == 4, again.stderr


@pytest.mark.parametrize("url", ["mysql://root@db/corral", "sqlite:///tmp/x.db", "db.example/corral"])
def test_a_db_url_that_is_not_postgresql_exits_2(url: str) -> None:
    result = run_manager("--db-url", url, "--port", "1")
    assert result.returncode == 2
    assert "--db-url must be a PostgreSQL URL" in result.stderr
