"""The apps API (document 003 §5.2): create, show, scale, rolling update and restart, stop/start, delete,
placement over nodeQuery, node loss and rejoin, bad input, durability, logs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import App, AppInstance, AuditLog, Node
from manager_api.services import job_keys
from manager_api.services.apps import upkeep as app_upkeep
from shared import keys, report_streams
from tests.support import wait_until

from .app_helpers import Agent, app_body, create, report, show, take, wanted
from .business_helpers import add_node
from .conftest import answer, beat

NODES = ["n1", "n2", "n3"]


@pytest.fixture
def nodes(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", labels={"role": "web"})
    add_node(client, redis_client, "n2", labels={"role": "web"})
    add_node(client, redis_client, "n3", labels={"role": "db"})


@pytest.fixture
def fast_recheck(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(app_upkeep, "RECHECK_SECONDS", 0.2)
    yield


def running(client: FlaskClient, name: str, n: int) -> bool:
    got = show(client, name)
    return sum(1 for i in wanted(got) if i["state"] == "running") == n and len(got["instances"]) == n


def served_then_changed(client: FlaskClient, agent: Agent, shown: dict[str, Any]) -> bool:
    """Answer the jobs queued so far, then tell whether the app changed since ``shown``."""
    agent.serve(NODES)
    return show(client, "web") != shown


def roll(client: FlaskClient, agent: Agent, count: int) -> int:
    """Play the agent through a rolling update or restart until it is over; returns the fewest instances
    seen running meanwhile (and checks there were never more than ``count`` + 1)."""
    lowest = count
    for _ in range(4 * count + 4):
        shown = show(client, "web")
        lowest = min(lowest, sum(1 for i in wanted(shown) if i["state"] == "running"))
        assert len(shown["instances"]) <= count + 1
        if not shown["deployment"]["in_progress"] and len(shown["instances"]) == count:
            return lowest
        # The duties send a step's jobs just after its commit: serve on every poll, not once.
        wait_until(lambda s=shown: served_then_changed(client, agent, s), timeout=20, what="a step of the roll")
    raise AssertionError(f"still rolling: {show(client, 'web')}")


def audit_actions(name: str) -> list[str]:
    return [row.action for row in AuditLog.select().where(AuditLog.target == name).order_by(AuditLog.id)]


def test_create_places_spread_instances_and_shows_their_reports(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    got = create(
        client,
        app_body(
            instances=2,
            nodeQuery="labels.role:web",
            envs={"MODE": "prod"},
            healthChecks=[{"protocol": "HTTP", "portIndex": 0}],
            resAlloc={"cpus": 0.5, "memMb": 128},
        ),
    )
    assert got["name"] == "web" and got["version"] == 1 and got["status"] == "running"
    assert got["definition"]["nodeQuery"] == "labels.role:web" and got["definition"]["instances"] == 2
    check = got["definition"]["healthChecks"][0]
    assert (check["path"], check["intervalSeconds"], check["maxConsecutiveFailures"]) == ("/", 10.0, 3)
    assert sorted(i["node_id"] for i in got["instances"]) == ["n1", "n2"]  # spread, only matching nodes
    assert {i["state"] for i in got["instances"]} == {"pending"}
    jobs = {n: take(redis_client, n) for n in NODES}
    assert jobs["n3"] == []
    for node in ("n1", "n2"):
        [(kind, payload)] = jobs[node]
        assert kind == "run" and payload["app"] == "web" and payload["version"] == 1
        assert (payload["command"], payload["args"], payload["env"]) == ("python", ["http_server.py"], {"MODE": "prod"})
        assert payload["health_checks"][0]["port_index"] == 0 and payload["res_alloc"] == {"cpus": 0.5, "mem_mb": 128}
        instance = next(i for i in got["instances"] if i["node_id"] == node)
        assert payload["instance_id"] == instance["id"] and instance["id"].startswith("web-")
        report(
            redis_client,
            "web",
            instance["id"],
            node,
            pid=4242,
            ports=[20001],
            started_at=1_700_000_000.0,
            last_check={"at": 1_700_000_010.0, "ok": True, "answer": "HTTP 200"},
        )
    wait_until(lambda: running(client, "web", 2), timeout=20, what="instances running")
    shown = show(client, "web")
    one = shown["instances"][0]
    assert (one["pid"], one["ports"], one["health"], one["hostname"]) == (
        4242,
        [20001],
        "healthy",
        f"host-{one['node_id']}",
    )
    assert one["last_check"]["answer"] == "HTTP 200" and one["started_at"].startswith("2023-11-14")
    assert shown["counts"]["running"] == 2 and shown["counts"]["healthy"] == 2 and shown["settled"]
    listed = answer(client.get("/api/apps"))
    assert listed["total"] == 1 and listed["apps"][0]["name"] == "web" and "instances" not in listed["apps"][0]
    assert audit_actions("web") == ["app.create"]


def test_two_per_node_only_when_fewer_nodes_match(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None
) -> None:
    got = create(client, app_body(instances=5, nodeQuery="labels.role:web"))
    assert Counter(i["node_id"] for i in got["instances"]) == {"n1": 3, "n2": 2}
    # Scaling down keeps the spread: the extra go from the nodes holding the most.
    got = answer(client.post("/api/apps/web/scale", json={"instances": 2}))
    assert sorted(i["node_id"] for i in wanted(got)) == ["n1", "n2"]
    got = create(client, app_body("all", instances=3))
    assert sorted(i["node_id"] for i in got["instances"]) == NODES


def test_short_app_says_why_per_node(client: FlaskClient, redis_client: redis_lib.Redis, nodes: None) -> None:
    got = create(client, app_body(instances=3, nodeQuery="labels.role:web", resAlloc={"cpus": 3, "memMb": 0}))
    assert len(got["instances"]) == 2
    reasons = got["shortfall"]["reasons"]
    assert got["shortfall"]["missing"] == 1
    assert "host-n1: cpu 1 cores free < 3 cores" in reasons and "host-n2: cpu 1 cores free < 3 cores" in reasons
    assert "host-n3: does not match the app's nodeQuery" in reasons


def test_scale_up_and_down(client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties) -> None:
    agent = Agent(redis_client)
    create(client, app_body(instances=1))
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 1), timeout=20)
    got = answer(client.post("/api/apps/web/scale", json={"instances": 3}))
    assert len(wanted(got)) == 3 and sorted(i["node_id"] for i in got["instances"]) == NODES
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 3), timeout=20)
    # Scale down: the unhealthy first, then the newest.
    sick = show(client, "web")["instances"][0]
    report(redis_client, "web", sick["id"], sick["node_id"], health="unhealthy")
    wait_until(lambda: show(client, "web")["counts"]["unhealthy"] == 1, timeout=20)
    got = answer(client.post("/api/apps/web/scale", json={"instances": 2}))
    stopping = [i["id"] for i in got["instances"] if i["desired"] == "stop"]
    assert stopping == [sick["id"]]
    taken = agent.serve(NODES)
    assert [(kind, payload["instance_id"]) for _, kind, payload in taken] == [("stop", sick["id"])]
    wait_until(lambda: running(client, "web", 2), timeout=20, what="stopped instance gone")
    assert audit_actions("web") == ["app.create", "app.scale", "app.scale"]


def test_rolling_update_keeps_count_minus_one_and_an_unchanged_put_restarts_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    agent = Agent(redis_client)
    body = app_body(instances=3)
    create(client, body)
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 3), timeout=20)
    same = answer(client.put("/api/apps/web", json=body))
    assert same["version"] == 1 and all(take(redis_client, n) == [] for n in NODES)
    # Only orchestration changed: no new version either.
    got = answer(client.put("/api/apps/web", json={**body, "unreachableSeconds": 30}))
    assert got["version"] == 1 and all(take(redis_client, n) == [] for n in NODES)
    got = answer(client.put("/api/apps/web", json={**body, "unreachableSeconds": 30, "envs": {"V": "2"}}))
    assert got["version"] == 2 and got["deployment"]["in_progress"]
    lowest_ready = roll(client, agent, 3)
    final = show(client, "web")
    assert {i["version"] for i in final["instances"]} == {2} and len(final["instances"]) == 3
    assert all(payload["env"] == {"V": "2"} for _, payload in agent.running.values())
    assert lowest_ready >= 2  # count - 1: the one told to stop no longer counts
    assert audit_actions("web") == ["app.create", "app.update", "app.update"]


def test_restart_is_rolling_and_stop_start_delete(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    agent = Agent(redis_client)
    create(client, app_body(instances=2))
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 2), timeout=20)
    before = {i["id"] for i in show(client, "web")["instances"]}
    got = answer(client.post("/api/apps/web/restart"))
    assert got["version"] == 2 and len(got["instances"]) == 3  # one new first, the old ones still run
    assert roll(client, agent, 2) >= 1
    wait_until(lambda: running(client, "web", 2), timeout=20)
    assert not before & {i["id"] for i in show(client, "web")["instances"]}
    got = answer(client.post("/api/apps/web/stop"))
    assert got["status"] == "stopped" and not wanted(got)
    agent.serve(NODES)
    wait_until(lambda: show(client, "web")["instances"] == [], timeout=20, what="stopped")
    assert show(client, "web")["definition"]["name"] == "web"
    got = answer(client.post("/api/apps/web/start"))
    assert len(wanted(got)) == 2
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 2), timeout=20)
    ids = {i["id"] for i in show(client, "web")["instances"]}
    gone = answer(client.delete("/api/apps/web"))
    assert set(gone["stopped_instances"]) == ids
    taken = agent.serve(NODES)
    assert {payload["instance_id"] for _, kind, payload in taken if kind == "stop"} == ids
    assert client.get("/api/apps/web").status_code == 404
    assert audit_actions("web") == ["app.create", "app.restart", "app.stop", "app.start", "app.delete"]


def test_node_loss_replaces_after_unreachable_seconds_and_stale_copies_are_stopped(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", interval=0.5)
    add_node(client, redis_client, "n2", interval=60.0)  # online for the whole test
    agent = Agent(redis_client)
    got = create(client, app_body(instances=1, nodeQuery="hostname:host-n1 OR hostname:host-n2", unreachableSeconds=2))
    assert got["instances"][0]["node_id"] == "n1"  # equal nodes: the lower id
    lost_id = got["instances"][0]["id"]
    agent.serve(["n1", "n2"])
    wait_until(lambda: show(client, "web")["instances"][0]["state"] in ("running", "lost"), timeout=20)
    # n1 stops beating: its instance reads lost, and is replaced only after unreachableSeconds.
    wait_until(lambda: show(client, "web")["instances"][0]["state"] == "lost", timeout=20, what="lost")
    assert [i["node_id"] for i in show(client, "web")["instances"]] == ["n1"]
    wait_until(lambda: len(show(client, "web")["instances"]) == 2, timeout=20, what="replaced")
    shown = show(client, "web")
    new = next(i for i in shown["instances"] if i["id"] != lost_id)
    assert new["node_id"] == "n2" and new["desired"] == "run"
    assert next(i for i in shown["instances"] if i["id"] == lost_id)["desired"] == "stop"
    assert "app.reschedule" in audit_actions("web") and "app.instance.lost" in audit_actions("web")
    # n1 comes back and reports its stale copy: the manager keeps the replacement, and stops the copy.
    beat(redis_client, "n1", interval=60.0)
    take(redis_client, "n1")  # the stop queued while it was away (the agent may have missed it)
    report(redis_client, "web", lost_id, "n1", pid=7)
    stops = wait_until(lambda: take(redis_client, "n1"), timeout=20, what="stale copy told to stop")
    assert stops == [("stop", {**stops[0][1], "app": "web", "instance_id": lost_id})]
    report(redis_client, "web", lost_id, "n1", "stopped", "unknown")
    wait_until(lambda: [i["id"] for i in show(client, "web")["instances"]] == [new["id"]], timeout=20)
    # An instance the manager never heard of is stopped too.
    assert [k for k, _ in take(redis_client, "n2")] == ["run"]  # the replacement's
    report(redis_client, "web", "web-deadbeef", "n2")
    stops = wait_until(lambda: take(redis_client, "n2"), timeout=20)
    assert [(k, p["instance_id"]) for k, p in stops if k == "stop"] == [("stop", "web-deadbeef")]


def test_a_node_that_stops_matching_loses_its_instance_and_a_new_match_gets_it(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties, fast_recheck: None
) -> None:
    agent = Agent(redis_client)
    got = create(client, app_body(instances=1, nodeQuery="labels.zone:blue"))
    assert got["instances"] == [] and got["shortfall"]["missing"] == 1
    answer(client.put("/api/nodes/n2/labels", json={"labels": {"zone": "blue"}}))
    wait_until(lambda: [i["node_id"] for i in show(client, "web")["instances"]] == ["n2"], timeout=20)
    agent.serve(NODES)
    wait_until(lambda: running(client, "web", 1), timeout=20)
    answer(client.put("/api/nodes/n2/labels", json={"labels": {}}))
    answer(client.put("/api/nodes/n3/labels", json={"labels": {"zone": "blue"}}))
    wait_until(lambda: [i["node_id"] for i in wanted(show(client, "web"))] == ["n3"], timeout=20, what="moved")
    assert [k for _, k, _ in agent.serve(NODES)] == ["stop", "run"]
    wait_until(lambda: running(client, "web", 1), timeout=20)
    assert "app.reschedule" in audit_actions("web")


def test_restarts_are_recorded_from_reports(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    got = create(client, app_body(instances=1))
    instance = got["instances"][0]
    restart = {"at": 1_700_000_100.0, "reason": "exited with code 1", "exit_code": 1}
    for _ in range(2):  # the same restart in two reports: one record
        report(
            redis_client,
            "web",
            instance["id"],
            instance["node_id"],
            restarts=1,
            restart=restart,
            exit_code=1,
            reason="exited with code 1",
        )
    marker = report(redis_client, "web", instance["id"], instance["node_id"], restarts=1, exit_code=1)
    from .conftest import stream_consumed

    wait_until(lambda: stream_consumed(redis_client, instance["node_id"], marker), timeout=20)
    shown = show(client, "web")["instances"][0]
    assert shown["restart_count"] == 1 and shown["exit_code"] == 1
    assert [(r["reason"], r["exit_code"]) for r in shown["restarts"]] == [("exited with code 1", 1)]
    assert audit_actions("web").count("app.instance.restart") == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"healthChecks": [{"protocol": "UDP"}]}, "healthChecks[0].protocol"),
        ({"healthChecks": [{"protocol": "HTTP", "portIndex": 1}]}, "healthChecks[0].portIndex"),
        ({"instances": -1}, "instances"),
        ({"instances": 1_000_000}, "instances"),
        ({"nodeQuery": "labels.role:(web"}, "nodeQuery"),
        ({"uris": ["ftp://example.com/x.zip"]}, "uris[0]"),
        ({"name": "../web"}, "name"),
        ({"toProcess": ""}, "toProcess"),
        ({"color": "blue"}, "color"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, change: dict[str, Any], field: str
) -> None:
    got = client.post("/api/apps", json={**app_body(), **change})
    assert got.status_code == 400, got.get_json()
    assert f": {field}: " in got.get_json()["error"]
    assert App.select().count() == 0 and AppInstance.select().count() == 0
    assert all(take(redis_client, n) == [] for n in NODES)


def test_duplicate_name_is_409_and_bad_scale_changes_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None
) -> None:
    create(client, app_body(instances=1))
    got = client.post("/api/apps", json=app_body(instances=2))
    assert got.status_code == 409 and "already exists" in got.get_json()["error"]
    bad = client.post("/api/apps/web/scale", json={"instances": -3})
    assert bad.status_code == 400 and ": instances: " in bad.get_json()["error"]
    bad = client.put("/api/apps/web", json=app_body(instances=2, ports=[]) | {"healthChecks": [{"protocol": "TCP"}]})
    assert bad.status_code == 400 and "portIndex" in bad.get_json()["error"]
    assert show(client, "web")["definition"]["instances"] == 1 and len(show(client, "web")["instances"]) == 1
    assert client.get("/api/apps/nope").status_code == 404
    assert client.post("/api/apps/nope/scale", json={"instances": 1}).status_code == 404


def test_apps_survive_a_manager_restart(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, settings: Settings, app: Flask, duties: Duties
) -> None:
    got = create(client, app_body(instances=2, healthChecks=[{"protocol": "TCP"}]))
    for instance in got["instances"]:
        report(
            redis_client,
            "web",
            instance["id"],
            instance["node_id"],
            health="unhealthy",
            last_check={"at": 1.0, "ok": False, "answer": "connection refused"},
        )
    wait_until(lambda: show(client, "web")["counts"]["unhealthy"] == 2, timeout=20)
    before = show(client, "web")
    close_app(app)
    db.close()
    again = create_app(settings)
    try:
        after = answer(again.test_client().get("/api/apps/web"))
        assert after["instances"] == before["instances"] and after["definition"] == before["definition"]
        assert after["instances"][0]["last_check"]["answer"] == "connection refused"
    finally:
        close_app(again)


def test_logs_tail_and_follow(client: FlaskClient, redis_client: redis_lib.Redis, nodes: None) -> None:
    got = create(client, app_body(instances=1))
    instance = got["instances"][0]
    node_id, instance_id = instance["node_id"], instance["id"]
    key = job_keys.node_key(node_id)
    report_streams.append_instance_log(redis_client, node_id, instance_id, "stdout", ["a", "b", "c"], key=key)
    report_streams.append_instance_log(redis_client, node_id, instance_id, "stderr", ["oops"], key=key)
    # A line its node did not sign is not shown.
    redis_client.xadd(keys.instance_log(node_id, instance_id), {"stream": "stdout", "line": "forged"})
    base = f"/api/apps/web/instances/{instance_id}/logs"
    lines = answer(client.get(f"{base}?tail=3"))["lines"]
    assert [(x["stream"], x["line"]) for x in lines] == [("stdout", "b"), ("stdout", "c"), ("stderr", "oops")]
    assert [x["line"] for x in answer(client.get(f"{base}?stream=stdout&tail=2"))["lines"]] == ["b", "c"]
    assert client.get("/api/apps/web/instances/web-nothere/logs").status_code == 404
    assert client.get(f"{base}?stream=both").status_code == 400
    response = client.get(f"{base}?follow=1&tail=1&stream=stdout")
    assert response.mimetype == "text/event-stream"
    chunks = response.response  # a generator: read the first event, add a line, read it live
    first = next(iter(chunks))
    text = first.decode() if isinstance(first, bytes) else first
    assert "event: line" in text and json.loads(text.split("data: ", 1)[1])["line"] == "c"
    report_streams.append_instance_log(redis_client, node_id, instance_id, "stdout", ["live"], key=key)
    live = next(iter(chunks))
    text = live.decode() if isinstance(live, bytes) else live
    assert json.loads(text.split("data: ", 1)[1])["line"] == "live"
    response.close()


def test_a_node_back_within_unreachable_seconds_keeps_its_instance(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", interval=0.5)
    add_node(client, redis_client, "n2", interval=60.0)
    got = create(
        client, app_body(instances=1, nodeQuery="hostname:host-n1 OR hostname:host-n2", unreachableSeconds=600)
    )
    [instance] = got["instances"]
    assert instance["node_id"] == "n1"
    wait_until(lambda: show(client, "web")["instances"][0]["state"] == "lost", timeout=20, what="lost")
    assert len(show(client, "web")["instances"]) == 1 and not show(client, "web")["settled"]  # not replaced yet
    # Its agent was only away (or restarted): the same instance id and pid again, adopted back.
    beat(redis_client, "n1", interval=60.0)
    report(redis_client, "web", instance["id"], "n1", pid=4242)
    wait_until(lambda: show(client, "web")["instances"][0]["state"] == "running", timeout=20, what="adopted")
    shown = show(client, "web")
    assert [(i["id"], i["pid"], i["desired"]) for i in shown["instances"]] == [(instance["id"], 4242, "run")]
    assert "app.instance.adopt" in audit_actions("web") and "app.reschedule" not in audit_actions("web")
    assert [k for k, _ in take(redis_client, "n2")] == []


def test_every_app_is_looked_at_again_only_when_the_nodes_changed(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None
) -> None:
    recheck = app_upkeep.Recheck()
    assert recheck.due(1000.0)
    assert not recheck.due(1000.0 + app_upkeep.RECHECK_SECONDS / 2)  # too soon
    assert not recheck.due(1000.0 + app_upkeep.RECHECK_SECONDS)  # nothing changed
    answer(client.put("/api/nodes/n2/labels", json={"labels": {"zone": "blue"}}))
    assert recheck.due(1000.0 + 2 * app_upkeep.RECHECK_SECONDS)  # a label changed
    # A status flip (which leaves the node revision alone) and a last_seen write (which is not a change).
    with db.write_transaction():
        Node.update(last_seen=Node.last_seen).where(Node.id == "n2").execute()
    assert not recheck.due(1000.0 + 2.5 * app_upkeep.RECHECK_SECONDS)
    with db.write_transaction():
        Node.update(status=1 - Node.status).where(Node.id == "n2").execute()
    assert recheck.due(1000.0 + 3 * app_upkeep.RECHECK_SECONDS)
    assert not recheck.due(1000.0 + 4 * app_upkeep.RECHECK_SECONDS)
    assert recheck.due(1000.0 + 4 * app_upkeep.RECHECK_SECONDS + app_upkeep.FORCED_RECHECK_SECONDS)
