"""Task processors end to end (issue 17, Elves' SAP/SSP): a real manager, two real agents, and a webhook receiver
of the test's own that gets each node's result as it arrives and the task's summary, signed with the task's
secret, retried with the same delivery id, given up after the attempts allowed."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.e2e.harness import Agent, Manager, isolated_env
from tests.e2e.webhook_receiver import Delivery, Receiver, start_receiver
from tests.support import wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 0.5
HOSTS = ("proc-a", "proc-b")
SECRET = "processor-secret-of-the-e2e-test"
MAX_ATTEMPTS = 2


@dataclass
class Setup:
    manager: Manager
    receiver: Receiver
    url: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("processors")
    server, receiver = start_receiver()
    env = isolated_env(tmp) | {"CORRAL_PROCESSOR_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}
    manager = Manager(tmp, env)
    agents = [Agent(tmp, env, manager, host, INTERVAL) for host in HOSTS]
    try:
        manager.start()
        for agent in agents:
            agent.start()
        wait_until(lambda: len(online(manager)) == len(HOSTS), timeout=30, what="both agents online")
        # A path with a token in it, as webhook URLs often have: never shown, never logged.
        yield Setup(manager, receiver, f"http://127.0.0.1:{server.server_address[1]}/hooks/t0ken-in-path")
    finally:
        for agent in agents:
            if agent.alive():
                assert agent.terminate() == 0
        if manager.alive():
            assert manager.terminate() == 0
        server.shutdown()
        server.server_close()
    assert SECRET not in manager.output() and "t0ken-in-path" not in manager.output()


def online(manager: Manager) -> list[str]:
    return [n["hostname"] for n in manager.get("/api/nodes").json()["nodes"] if n["status"] == "online"]


def valid_signature(delivery: Delivery, secret: str = SECRET) -> bool:
    """What a receiver does (README, Processors): HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), delivery.raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers.get("X-Corral-Signature", ""))


def run(setup: Setup, name: str, command: str, wait: float = 30, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "command": command, "targets": list(HOSTS), "processor": {"url": setup.url, "secret": SECRET}}
    answer = requests.post(f"{setup.manager.url}/api/tasks?wait={wait}", json=body | extra, timeout=wait + 10)
    assert answer.status_code == 201, answer.text
    task: dict[str, Any] = answer.json()
    return task


def audit(manager: Manager, target: str) -> list[tuple[str, str]]:
    entries = manager.get("/api/audit", params={"action": "processor", "target": target}).json()["entries"]
    return [(e["action"], e["detail"]["event"]) for e in entries]


def test_each_nodes_result_then_the_summary_reach_the_processor_signed(setup: Setup) -> None:
    task = run(setup, "greet", 'echo "hello from $CORRAL_NODE_ID"')
    # The synchronous mode answers once the summary went out, with its delivery status.
    assert task["status"] == "completed", task
    assert task["processor"] == {
        "url": setup.url.split("/hooks")[0],
        "deliveries": {"pending": 0, "sent": 3, "given_up": 0},
        "summary": "sent",
        "last_error": "",
    }
    got = [d for d in setup.receiver.deliveries if d.body.get("task_id") == task["task_id"]]
    assert [d.headers["X-Corral-Event"] for d in got] == ["task.host", "task.host", "task.summary"]
    assert all(valid_signature(d) and d.status == 200 for d in got)
    assert not valid_signature(got[0], "another-secret-of-16-chars")
    hosts = {d.body["host"]["hostname"]: d.body["host"] for d in got[:2]}
    assert set(hosts) == set(HOSTS)
    for host in hosts.values():
        assert host["status"] == "succeeded" and host["exit_code"] == 0
        assert host["stdout"] == f"hello from {host['host_id']}\n"
    # The very host objects of the task's own answer.
    assert sorted(hosts.values(), key=lambda h: h["hostname"]) == sorted(task["hosts"], key=lambda h: h["hostname"])
    summary = got[2].body
    assert summary["event"] == "task.summary" and summary["name"] == "greet" and summary["status"] == "completed"
    assert (summary["total_hosts"], summary["succeeded_hosts"], summary["failed_hosts"]) == (2, 2, 0)
    assert len({d.headers["X-Corral-Delivery"] for d in got}) == 3
    assert all(d.headers["X-Corral-Delivery"] == d.body["id"] for d in got)
    # The secret and the URL's path are never answered.
    detail = setup.manager.get(f"/api/tasks/{task['task_id']}").text
    listing = setup.manager.get("/api/tasks").text
    assert SECRET not in detail + listing and "t0ken" not in detail + listing
    assert audit(setup.manager, task["task_id"]) == [("processor.sent", "task.summary")]


def test_a_failing_node_and_a_500_retried_with_the_same_delivery_id(setup: Setup) -> None:
    setup.receiver.fail_first.add("flaky")
    task = run(setup, "flaky", f'test "$CORRAL_NODE_ID" = "{node_id(setup, HOSTS[0])}"')
    assert task["status"] == "failed"
    assert task["processor"]["summary"] == "sent" and task["processor"]["deliveries"]["sent"] == 3
    got = [d for d in setup.receiver.deliveries if d.body.get("task_id") == task["task_id"]]
    by_delivery: dict[str, list[Delivery]] = {}
    for d in got:
        by_delivery.setdefault(d.headers["X-Corral-Delivery"], []).append(d)
    assert len(by_delivery) == 3
    for copies in by_delivery.values():  # the first try answered 500, the second 200: the same body, signed
        assert [c.status for c in copies] == [500, 200] and copies[0].raw == copies[1].raw
    results = {d.body["host"]["hostname"]: d.body["host"]["status"] for d in got if d.body["event"] == "task.host"}
    assert results == {HOSTS[0]: "succeeded", HOSTS[1]: "failed"}
    assert got[-1].body["event"] == "task.summary" and got[-1].body["failed_hosts"] == 1


def test_a_receiver_that_always_fails_is_given_up_and_the_answer_says_so(setup: Setup) -> None:
    setup.receiver.fail_always.add("unheard")
    task = run(setup, "unheard", "true", wait=30)
    assert task["status"] == "completed"
    assert task["processor"]["summary"] == "given_up"
    assert task["processor"]["deliveries"] == {"pending": 0, "sent": 0, "given_up": 3}
    assert task["processor"]["last_error"] == "HTTP 500"
    got = [d for d in setup.receiver.deliveries if d.body.get("task_id") == task["task_id"]]
    assert len(got) == 3 * MAX_ATTEMPTS
    assert sorted(audit(setup.manager, task["task_id"])) == sorted(
        [("processor.given_up", "task.host")] * 2 + [("processor.given_up", "task.summary")]
    )


@contextmanager
def fired_by_schedule(setup: Setup, body: dict[str, Any], what: str) -> Iterator[tuple[dict[str, Any], Delivery]]:
    """Make the schedule ``body`` with the test's processor, wait for the signed summary of a task it fired
    (completed), and give the schedule's answer and that summary; the schedule is deleted after, whatever happens."""
    made = setup.manager.post("/api/schedules", body | {"processor": {"url": setup.url, "secret": SECRET}})
    assert made.status_code == 201, made.text
    try:
        summary = wait_until(
            lambda: setup.receiver.of("task.summary", created_by=f"schedule:{body['name']}"),
            timeout=30,
            what=what,
        )[0]
        assert valid_signature(summary) and summary.body["status"] == "completed"
        yield made.json(), summary
    finally:
        assert requests.delete(f"{setup.manager.url}/api/schedules/{made.json()['id']}", timeout=10).status_code in (
            200,
            204,
        )


def test_a_schedule_hands_its_processor_to_every_task_it_fires(setup: Setup) -> None:
    body = {
        "name": "every-second",
        "command": "true",
        "targets": [HOSTS[0]],
        "interval": 1,
        "secretEnv": {"TOKEN": "kept-sealed"},  # opened by the duties as they fire, as the processor is
    }
    with fired_by_schedule(setup, body, "a fired task's summary") as (made, _summary):
        assert made["processor"] == {"url": setup.url.split("/hooks")[0]}


def test_an_agent_side_schedules_firings_reach_its_processor(setup: Setup) -> None:
    body = {
        "name": "fired-on-agent",
        "command": "echo from-the-agent",
        "targets": [HOSTS[1]],
        "interval": 1,
        "on_agent": True,
    }
    with fired_by_schedule(setup, body, "an agent-side firing's summary") as (_made, summary):
        (result,) = [d for d in setup.receiver.of("task.host") if d.body["task_id"] == summary.body["task_id"]]
        assert result.body["host"]["hostname"] == HOSTS[1] and result.body["host"]["stdout"] == "from-the-agent\n"


def test_a_workflows_processor_hears_every_step(setup: Setup) -> None:
    steps = [
        {"name": "first", "task": {"command": "true", "targets": [HOSTS[0]]}},
        {"name": "second", "depends_on": ["first"], "task": {"command": "true", "targets": [HOSTS[1]]}},
    ]
    body = {"name": "two-steps", "steps": steps, "processor": {"url": setup.url, "secret": SECRET}}
    answer = requests.post(f"{setup.manager.url}/api/workflows?wait=30", json=body, timeout=40)
    assert answer.status_code == 201, answer.text
    workflow = answer.json()
    assert workflow["status"] == "completed", workflow
    creators = {f"workflow:{workflow['id']}/first", f"workflow:{workflow['id']}/second"}
    summaries = wait_until(
        lambda: (
            s
            if len(s := [d for d in setup.receiver.of("task.summary") if d.body["created_by"] in creators]) == 2
            else None
        ),
        timeout=20,
        what="both steps' summaries",
    )
    assert all(valid_signature(d) and d.body["status"] == "completed" for d in summaries)
    results = [d for d in setup.receiver.of("task.host") if d.body["created_by"] in creators]
    assert sorted(d.body["host"]["hostname"] for d in results) == sorted(HOSTS)


@pytest.mark.parametrize(
    ("processor", "named"),
    [
        ({"url": "ftp://127.0.0.1/x", "secret": SECRET}, "url"),
        ({"url": "file:///etc/passwd", "secret": SECRET}, "url"),
        ({"url": "http://", "secret": SECRET}, "url"),
        ({"url": "http://127.0.0.1:99999/x", "secret": SECRET}, "url"),
        ({"url": "http://[::1/x", "secret": SECRET}, "url"),
        ({"url": "http://127.0.0.1/x", "secret": "short"}, "secret"),
        ({"url": "http://127.0.0.1/x"}, "secret"),
        ({"secret": SECRET}, "url"),
        ({"url": "http://127.0.0.1/x", "secret": SECRET, "extra": 1}, "extra"),
        ("http://127.0.0.1/x", "processor"),
    ],
)
def test_a_bad_processor_is_a_400_naming_the_field_and_nothing_is_created(
    setup: Setup, processor: Any, named: str
) -> None:
    before = setup.manager.get("/api/tasks").json()["total"]
    answer = setup.manager.post(
        "/api/tasks", {"name": "bad", "command": "true", "targets": ["*"], "processor": processor}
    )
    assert answer.status_code == 400, answer.text
    assert "processor" in answer.json()["error"] and named in answer.json()["error"], answer.text
    assert setup.manager.get("/api/tasks").json()["total"] == before


def node_id(setup: Setup, hostname: str) -> str:
    nodes = setup.manager.get("/api/nodes").json()["nodes"]
    return str(next(n["id"] for n in nodes if n["hostname"] == hostname))
