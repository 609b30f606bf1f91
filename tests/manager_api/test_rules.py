"""Pure rules: command pins, the deployment state and status, CLI checks, settings round trip."""

from __future__ import annotations

import pytest

from manager_api.config import Settings
from manager_api.launcher.arguments import UsageError, is_loopback, parse_sftp, redact_sftp
from manager_api.launcher.redis_server import bind_addresses
from manager_api.services.deployments.host_pins import split_pin, task_pin
from manager_api.services.deployments.state import deployment_state, instance_status
from manager_api.services.nodes.join import agent_redis_url
from shared.states import DeploymentState as D
from shared.states import InstanceStatus


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("192.168.10.100:/opt/apps/clean.sh", ("192.168.10.100", "/opt/apps/clean.sh")),
        ("web-01.example.com:/opt/run.sh --fast x", ("web-01.example.com", "/opt/run.sh --fast x")),
        ("/opt/apps/analyze.py", (None, "/opt/apps/analyze.py")),
        ("  /bin/echo a:/b  ", (None, "/bin/echo a:/b")),
        ("echo host:/path", (None, "echo host:/path")),
        ("host:relative/path", (None, "host:relative/path")),
        ("-bad:/x", (None, "-bad:/x")),
    ],
)
def test_split_pin(command: str, expected: tuple[str | None, str]) -> None:
    assert split_pin(command) == expected


def test_explicit_host_counts_as_pin() -> None:
    assert task_pin({"command": "/bin/true", "host": "db1"}) == ("db1", "/bin/true")
    assert task_pin({"command": "db2:/bin/true"}) == ("db2", "/bin/true")


@pytest.mark.parametrize(
    ("current", "tasks", "expected"),
    [
        (D.PENDING, ["PENDING", "PENDING"], D.PENDING),
        (D.PENDING, ["RUNNING", "PENDING"], D.RUNNING),
        (D.RUNNING, ["COMPLETED", "RUNNING"], D.RUNNING),
        (D.RUNNING, ["COMPLETED", "COMPLETED"], D.COMPLETED),
        (D.RUNNING, ["FAILED", "RUNNING"], D.FAILED),
        (D.RUNNING, ["LOST", "COMPLETED"], D.FAILED),
        (D.RUNNING, ["STOPPED", "COMPLETED"], D.STOPPED),
        (D.STOPPING, ["STOPPING", "STOPPED"], D.STOPPING),
        (D.STOPPING, ["STOPPED", "FAILED"], D.STOPPED),
        (D.STOPPED, ["STOPPED"], D.STOPPED),
    ],
)
def test_deployment_state(current: D, tasks: list[str], expected: D) -> None:
    assert deployment_state(current, tasks) == expected


def test_instance_status_is_zero_only_while_pending_or_running() -> None:
    assert {s: instance_status(s) for s in D} == {
        D.PENDING: InstanceStatus.RUNNING,
        D.RUNNING: InstanceStatus.RUNNING,
        D.COMPLETED: InstanceStatus.STOPPED,
        D.FAILED: InstanceStatus.STOPPED,
        D.STOPPING: InstanceStatus.STOPPED,
        D.STOPPED: InstanceStatus.STOPPED,
    }


def test_sftp_format() -> None:
    parts = parse_sftp("sftp://root:password@192.168.10.15:22/data/")
    assert (parts.hostname, parts.port, parts.path) == ("192.168.10.15", 22, "/data/")
    assert "password" not in redact_sftp(parts)
    for bad in [
        "ftp://u:p@h:22/d/",
        "sftp://h:22/d/",
        "sftp://u:p@h/d/",
        "sftp://u:p@h:22/d",
        "sftp://u:p@h:99999/d/",
    ]:
        with pytest.raises(UsageError) as info:
            parse_sftp(bad)
        assert "sftp://user:password@host:port/path/" in str(info.value)


def test_loopback_and_bind() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert bind_addresses("127.0.0.1") == ["127.0.0.1"]
    assert bind_addresses("0.0.0.0") == ["0.0.0.0"]
    assert bind_addresses("10.1.2.3") == ["127.0.0.1", "10.1.2.3"]


def test_agent_redis_url_choice() -> None:
    private = Settings(redis_url="redis://:pw@127.0.0.1:7000/0", private_redis=True)
    assert agent_redis_url(private, "192.168.1.100:8080", "u:p") == "redis://u:p@192.168.1.100:7000/0"
    assert agent_redis_url(private, "[::1]:8080", "u:p") == "redis://u:p@[::1]:7000/0"
    external = Settings(redis_url="redis://:pw@redis.example:6380/2")
    assert agent_redis_url(external, "m:8080", "u:p") == "redis://u:p@redis.example:6380/2"
    # No user of its own (the external Redis refused ACL SETUSER): the manager's own URL.
    assert agent_redis_url(external, "m:8080", None) == "redis://:pw@redis.example:6380/2"
    told = Settings(redis_url="redis://10.0.0.1:6380/0", agent_redis_url="redis://public:6380/0")
    assert agent_redis_url(told, "m:8080", "u:p") == "redis://public:6380/0"


def test_settings_env_round_trip() -> None:
    settings = Settings(
        db_path="/x/y.db",
        redis_url="redis://h:1/0",
        api_token="t",
        private_redis=True,
        offline_after_intervals=4,
        stop_grace_seconds=1.5,
    )
    assert Settings.from_env(settings.to_env()) == settings
