"""Joining the real manager over HTTP; the node id; where the join token comes from."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from shared import keys
from shared.defaults import PROTOCOL_VERSION
from shared.paths import local_join_token_path
from tests.support import free_port, wait_until
from tests.worker_agent.conftest import ManagerProcess
from worker_agent import cli
from worker_agent.identity import load_or_create_node_id
from worker_agent.join import join, paced_wait


def join_request(node_id: str) -> dict:
    return {
        "node_id": node_id,
        "hostname": "node-a",
        "ip": "127.0.0.1",
        "interval": 5.0,
        "protocol": PROTOCOL_VERSION,
        "version": "test",
        "facts": {"os": "Linux"},
        "node_secret": f"secret-of-{node_id}",
    }


def test_join_retries_a_rejected_token_until_the_right_one_appears(
    tmp_path: Path, manager: ManagerProcess, redis_url: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    node_id = uuid.uuid4().hex
    presented: list[str] = []

    def token() -> str:
        if presented.count("wrong-token") >= 2:
            token_file.write_text(manager.token + "\n")  # e.g. the operator fixed the token file
        presented.append(token_file.read_text().strip())
        return presented[-1]

    answer = join(manager.url, join_request(node_id), token, threading.Event(), max_delay=0.05)

    assert presented == ["wrong-token", "wrong-token", manager.token]
    wait_until(lambda: manager.rejected() == 2, what="the manager to log both refusals")
    assert bytes.fromhex(answer.pop("job_key"))
    # On an external Redis the manager may manage users on, the node gets its own.
    assert answer.pop("redis_url").startswith(f"redis://corral-node-{node_id}:")
    assert answer == {
        "node_id": node_id,
        "queue": keys.node_queue(node_id),
        "protocol": PROTOCOL_VERSION,
    }
    [body] = manager.nodes().values()
    assert (body["id"], body["hostname"], body["facts"]) == (node_id, "node-a", {"os": "Linux"})


def test_join_gives_up_when_asked_to_stop(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    began = time.monotonic()

    answer = join(f"http://127.0.0.1:{free_port()}", join_request(uuid.uuid4().hex), lambda: "t", stop)

    timer.join()
    assert answer is None
    assert time.monotonic() - began < 3
    assert "manager unreachable" in caplog.text


def test_a_rejected_token_is_logged_clearly(caplog: pytest.LogCaptureFixture, manager: ManagerProcess) -> None:
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    assert join(manager.url, join_request(uuid.uuid4().hex), lambda: "bad", stop, max_delay=0.05) is None
    timer.join()

    assert manager.rejected() >= 2
    assert "join token rejected" in caplog.text
    assert manager.nodes() == {}


def test_without_a_token_the_log_says_whether_the_manager_is_there_at_all(
    caplog: pytest.LogCaptureFixture, manager: ManagerProcess
) -> None:
    """A wrong --manager-url must read as an unreachable manager, not as a token still to come."""
    for url, said in (
        (f"http://127.0.0.1:{free_port()}", "manager unreachable at http://127.0.0.1:"),
        (manager.url, f"the manager at {manager.url} wants a join token and this agent has none"),
    ):
        caplog.clear()
        stop = threading.Event()
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        assert join(url, join_request(uuid.uuid4().hex), lambda: None, stop, max_delay=0.05) is None
        timer.join()
        assert said in caplog.text, caplog.text
        assert "no join token yet" not in caplog.text
    assert manager.nodes() == {}


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_node_id(tmp_path / "data")
    again = load_or_create_node_id(tmp_path / "data")

    assert first == again and len(first) == 32 and int(first, 16) >= 0
    assert (tmp_path / "data" / "node-id").read_text().strip() == first
    assert load_or_create_node_id(tmp_path / "other") != first


def test_token_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv(cli.TOKEN_ENV, raising=False)
    local = local_join_token_path(8080)
    explicit_file = tmp_path / "token-file"

    assert cli.token_source("flag", explicit_file, "http://localhost:8080")() == "flag"
    # A loopback manager: its token file is read on every attempt, so it may appear later.
    from_local = cli.token_source(None, None, "http://127.0.0.1:8080")
    assert from_local() is None
    local.parent.mkdir(parents=True)
    local.write_text("local-token\n")
    assert from_local() == "local-token"
    # A remote manager: no local file is guessed.
    assert cli.token_source(None, None, "http://10.1.2.3:8080")() is None
    explicit_file.write_text("file-token")
    assert cli.token_source(None, explicit_file, "http://10.1.2.3:8080")() == "file-token"
    monkeypatch.setenv(cli.TOKEN_ENV, "env-token")
    assert cli.token_source(None, explicit_file, "http://127.0.0.1:8080")() == "env-token"


def test_the_advertised_ip_is_the_route_to_the_manager() -> None:
    assert cli.advertised_ip("http://127.0.0.1:8080") == "127.0.0.1"
    assert cli.is_loopback("localhost") and cli.is_loopback("::1") and not cli.is_loopback("10.0.0.1")
    with pytest.raises(ValueError):
        cli.manager_address("ftp://example.org")


def test_a_429_is_waited_out_for_its_retry_after_plus_jitter() -> None:
    waits = [paced_wait(2.0) for _ in range(200)]
    # Never sooner than the manager asked, never more than twice that, and spread (not all agents in one second).
    assert all(2.0 <= wait <= 4.0 for wait in waits)
    assert max(waits) - min(waits) > 1.0


def test_agent_version_is_the_installed_distributions_read_from_its_metadata_header() -> None:
    from importlib import metadata

    from worker_agent.settings import agent_version

    assert agent_version() == metadata.version("corral")
