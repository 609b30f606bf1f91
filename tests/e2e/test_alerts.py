"""Webhook alerts end to end: a real manager and agent, and a receiver of the test's own on a free port.

The receiver checks nothing itself: it keeps every request (headers and raw body) and answers 500 where the
test asks it to, so each test reads what arrived and checks the signature the way the README tells receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.e2e.webhook_receiver import Delivery, Receiver, start_receiver
from tests.support import kill_marked, wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5  # offline after 3 intervals = 1.5 s
HOST = "alert-a"
SECRET = "e2e-alert-secret-b7f2"
MAX_ATTEMPTS = 3
PAYLOADS = Path(__file__).parent / "app_payloads"
MARK = "corral-e2e-alerts"  # in the app payload's argv: what the teardown kills


def valid_signature(delivery: Delivery) -> bool:
    """What a receiver does (README, Alerts): HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers.get("X-Corral-Signature", ""))


@dataclass
class Setup:
    manager: Manager
    agent: Agent
    receiver: Receiver
    env: dict[str, str]
    workdir: Path
    node_id: str = ""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("alerts")
    server, receiver = start_receiver()
    secret_file = tmp / "alert-secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    env = isolated_env(tmp)
    env["CORRAL_ALERT_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks/corral"
    manager = Manager(tmp, env, ["--alert-url", url, "--alert-secret-file", str(secret_file)])
    setup = Setup(manager, Agent(tmp, env, manager, HOST, INTERVAL), receiver, env, tmp)
    try:
        manager.start()
        setup.agent.start()
        setup.node_id = wait_until(lambda: online(manager), timeout=30, what="the agent online")[HOST]
        yield setup
    finally:
        if setup.agent.alive():  # the test of node.offline replaces the first agent
            setup.agent.terminate()
        if manager.alive():
            manager.terminate()
        server.shutdown()
        server.server_close()
        kill_marked(MARK)
    assert SECRET not in manager.output()  # the secret is never logged


def online(manager: Manager) -> dict[str, str]:
    return {n["hostname"]: n["id"] for n in manager.get("/api/nodes").json()["nodes"] if n["status"] == "online"}


def failing_task(manager: Manager, name: str) -> str:
    answer = requests.post(
        f"{manager.url}/api/tasks?wait=30", json={"name": name, "command": "exit 3", "targets": [HOST]}, timeout=40
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "failed", answer.text
    task_id: str = answer.json()["task_id"]
    return task_id


def audit(manager: Manager, **query: str) -> list[dict[str, Any]]:
    answer = manager.get("/api/audit", params={"action": "alert", **query})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


def stays(check: Any, seconds: float, what: str) -> None:
    """``check()`` holds at every poll for ``seconds`` (a deadline of polls, not one sleep)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.1)


def test_a_failed_task_is_posted_signed(setup: Setup) -> None:
    task_id = failing_task(setup.manager, "fails-once")
    (delivery,) = wait_until(
        lambda: setup.receiver.of("task.failed", task_id=task_id), timeout=20, what="task.failed delivered"
    )
    body = delivery.body
    assert valid_signature(delivery)
    assert delivery.status == 200
    assert (
        delivery.headers["X-Corral-Delivery"] == body["id"] and delivery.headers["Content-Type"] == "application/json"
    )
    assert body["event"] == "task.failed" and body["name"] == "fails-once"
    assert body["hosts"] == 1 and body["failed_hosts"] == 1 and body["succeeded_hosts"] == 0
    assert datetime.fromisoformat(body["at"]).tzinfo is not None
    # A body signed under another secret, or altered, does not pass.
    assert not valid_signature(Delivery(delivery.headers, delivery.raw.replace(b"fails-once", b"fails-twice"), 200))
    entries = wait_until(lambda: audit(setup.manager, target=body["id"]), timeout=10, what="alert.sent audited")
    assert [(e["action"], e["actor"], e["detail"]["attempt"]) for e in entries] == [("alert.sent", "duties", 1)]
    assert entries[0]["detail"]["url"].startswith("http://127.0.0.1:") and "hooks" not in entries[0]["detail"]["url"]


def test_a_500_is_retried_with_the_same_delivery_id_then_never_again(setup: Setup) -> None:
    setup.receiver.fail_first.add("flaky-receiver")
    task_id = failing_task(setup.manager, "flaky-receiver")
    first, second = wait_until(
        lambda: d if len(d := setup.receiver.of("task.failed", task_id=task_id)) >= 2 else None,
        timeout=20,
        what="task.failed delivered twice",
    )
    assert (first.status, second.status) == (500, 200)
    assert first.headers["X-Corral-Delivery"] == second.headers["X-Corral-Delivery"] == first.body["id"]
    assert first.raw == second.raw and valid_signature(second)
    # Acknowledged: past the next backoff (2 s) nothing more comes.
    stays(lambda: len(setup.receiver.of("task.failed", task_id=task_id)) == 2, 4.0, "a sent alert sent again")
    entries = audit(setup.manager, target=first.body["id"])
    assert [(e["action"], e["detail"]["attempt"]) for e in entries] == [("alert.sent", 2)]


def test_an_alert_never_acknowledged_is_given_up_and_audited(setup: Setup) -> None:
    setup.receiver.fail_always.add("hopeless-receiver")
    task_id = failing_task(setup.manager, "hopeless-receiver")
    deliveries = wait_until(
        lambda: d if len(d := setup.receiver.of("task.failed", task_id=task_id)) >= MAX_ATTEMPTS else None,
        timeout=30,
        what=f"{MAX_ATTEMPTS} attempts",
    )
    event_id = deliveries[0].body["id"]
    entries = wait_until(
        lambda: [e for e in audit(setup.manager, target=event_id) if e["action"] == "alert.given_up"],
        timeout=10,
        what="alert.given_up audited",
    )
    assert entries[0]["detail"]["attempts"] == MAX_ATTEMPTS and "HTTP 500" in json.dumps(entries[0]["detail"])
    stays(
        lambda: len(setup.receiver.of("task.failed", task_id=task_id)) == MAX_ATTEMPTS,
        5.0,
        "a given-up alert sent again",
    )


def test_node_offline_once_then_online(setup: Setup) -> None:
    node = setup.node_id
    onlines_before = len(setup.receiver.of("node.online", node_id=node))
    setup.agent.kill()
    (offline,) = wait_until(
        lambda: setup.receiver.of("node.offline", node_id=node), timeout=20, what="node.offline delivered"
    )
    assert offline.body["hostname"] == HOST and valid_signature(offline)
    # While it stays offline (several ticks and offline windows), the same condition is not raised again.
    stays(lambda: len(setup.receiver.of("node.offline", node_id=node)) == 1, 4.0, "node.offline raised twice")
    setup.agent = Agent(setup.workdir, setup.env, setup.manager, HOST, INTERVAL)
    setup.agent.start()
    wait_until(
        lambda: len(setup.receiver.of("node.online", node_id=node)) == onlines_before + 1,
        timeout=30,
        what="node.online delivered",
    )
    back = setup.receiver.of("node.online", node_id=node)[-1]
    assert back.body["id"] != offline.body["id"] and valid_signature(back)
    assert len(setup.receiver.of("node.offline", node_id=node)) == 1


def test_app_restart_and_app_short(setup: Setup) -> None:
    wait_until(lambda: online(setup.manager), timeout=30, what="the agent online")
    body = {
        "name": "alert-crash",
        "toProcess": sys.executable,
        "args": [str(PAYLOADS / "crasher.py"), MARK],
        "instances": 1,
        "backoffSeconds": 0.3,
        "maxLaunchDelaySeconds": 2,
    }
    answer = setup.manager.post("/api/apps", body)
    assert answer.status_code == 201, answer.text
    restarted = wait_until(
        lambda: setup.receiver.of("app.instance_restarted", app="alert-crash"), timeout=30, what="a restart alert"
    )
    assert restarted[0].body["node_id"] == setup.node_id and "code 3" in restarted[0].body["reason"]
    # An app no node matches: short from its creation, raised once while it stays short.
    short = {"name": "alert-short", "toProcess": sys.executable, "args": [str(PAYLOADS / "crasher.py"), MARK]}
    answer = setup.manager.post("/api/apps", {**short, "instances": 1, "nodeQuery": "labels.zone:nowhere"})
    assert answer.status_code == 201, answer.text
    (alert,) = wait_until(lambda: setup.receiver.of("app.short", app="alert-short"), timeout=20, what="app.short")
    assert alert.body["missing"] == 1 and alert.body["reasons"]
    stays(lambda: len(setup.receiver.of("app.short", app="alert-short")) == 1, 3.0, "app.short raised twice")
    for name in ("alert-crash", "alert-short"):
        assert requests.delete(f"{setup.manager.url}/api/apps/{name}", timeout=10).status_code in (200, 202, 204)


def test_a_failed_business_is_posted(setup: Setup) -> None:
    wait_until(lambda: online(setup.manager), timeout=30, what="the agent online")
    component = {
        "component_id": "broken",
        "component_name": "broken",
        "type": "process",
        "command": "exit 7",
        "resource_requirements": {"cpu_cores": 0.1, "memory_mb": 16, "gpu": False},
    }
    answer = setup.manager.post("/api/businesses", {"business_name": "alert-shop", "components": [component]})
    assert answer.status_code == 201, answer.text
    business_id = answer.json()["business_id"]
    (alert,) = wait_until(
        lambda: setup.receiver.of("business.failed", business_id=business_id), timeout=30, what="business.failed"
    )
    assert valid_signature(alert) and alert.body["reason"], alert.body
    assert setup.manager.get(f"/api/businesses/{business_id}").json()["status"] == "failed"
    assert requests.delete(f"{setup.manager.url}/api/businesses/{business_id}", timeout=10).status_code < 300
