"""Businesses with the duties running: reports drive components and the business; failure, rollback, stop,
restart, update, node loss, usage history, and a manager restart that loses nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from manager_api import db
from manager_api.app import close_app, create_app
from manager_api.background.duties import Duties
from manager_api.config import Settings
from manager_api.models import Alert, AuditLog, BusinessComponent, ComponentMetric, utcnow
from manager_api.services.alerts import events as alert_events
from manager_api.services.businesses import upkeep as business_upkeep
from shared import keys
from tests.support import wait_until

from .business_helpers import (
    add_node,
    business,
    comp,
    component,
    consumed,
    deploy,
    detail,
    report,
    take_jobs,
)
from .conftest import beat, running_duties


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every usage report sampled (not one a minute), so the tests see the usage they send."""
    return replace(settings, component_metrics_every_seconds=0.0)


@pytest.fixture
def nodes(client: FlaskClient, redis_client: redis_lib.Redis) -> None:
    add_node(client, redis_client, "n1", cpu=4, memory_mb=4096, labels={"role": "a"})
    add_node(client, redis_client, "n2", cpu=4, memory_mb=4096, labels={"role": "b"})


def on(node_id: str) -> dict[str, Any]:
    return {"affinity": {"node_labels": {"role": "a" if node_id == "n1" else "b"}}}


def status_is(client: FlaskClient, business_id: str, status: str) -> bool:
    return bool(detail(client, business_id)["status"] == status)


def run(
    redis_client: redis_lib.Redis, business_id: str, cid: str, node_id: str, generation: int = 1, pid: int = 100
) -> str:
    report(redis_client, business_id, cid, node_id, "starting", generation)
    return report(
        redis_client,
        business_id,
        cid,
        node_id,
        "running",
        generation,
        pid=pid,
        resource_usage={"cpu_percent": 12.5, "memory_mb": 300, "gpu_percent": None},
    )


def running_shop(client: FlaskClient, redis_client: redis_lib.Redis, **extra: Any) -> str:
    """shop: a and c on n1, b on n2, all reported running; their deploy jobs taken."""
    body = business(component("a", **on("n1")), component("b", **on("n2")), component("c", **on("n1")), **extra)
    business_id = deploy(client, body)["business_id"]
    take_jobs(redis_client, "n1"), take_jobs(redis_client, "n2")
    for cid, node_id, pid in (("a", "n1", 101), ("b", "n2", 102), ("c", "n1", 103)):
        run(redis_client, business_id, cid, node_id, pid=pid)
    wait_until(lambda: status_is(client, business_id, "running"), what="business running")
    return business_id


def test_reports_drive_a_deploy_to_running(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    body = business(component("a", **on("n1")), component("b", **on("n2")), business_id="shop")
    deploy(client, body)
    assert [(k, p["component_id"], p["generation"]) for k, p in take_jobs(redis_client, "n1")] == [("deploy", "a", 1)]
    assert [(k, p["component_id"]) for k, p in take_jobs(redis_client, "n2")] == [("deploy", "b")]
    report(redis_client, "shop", "a", "n1", "downloading")
    run(redis_client, "shop", "a", "n1", pid=4242)
    wait_until(lambda: comp(detail(client, "shop"), "a")["status"] == "running", what="a running")
    assert detail(client, "shop")["status"] == "deploying"  # b is not running yet
    # Strays change nothing: unknown component, wrong node, a newer generation than was ever sent.
    report(redis_client, "shop", "zz", "n1", "running")
    report(redis_client, "shop", "b", "n1", "failed", error_message="not mine")
    report(redis_client, "shop", "b", "n2", "failed", generation=7)
    run(redis_client, "shop", "b", "n2", pid=77)
    wait_until(lambda: status_is(client, "shop", "running"), what="business running")
    got = detail(client, "shop")
    a = comp(got, "a")
    assert (a["pid"], a["node_id"], a["hostname"], a["error_message"]) == (4242, "n1", "host-n1", None)
    assert a["resource_usage"] == {"cpu_percent": 12.5, "memory_mb": 300.0, "gpu_percent": None}
    assert a["started_at"] and a["started_at"].endswith("Z")
    a_history = [h["to"] for h in reversed(got["history"]) if h["component_id"] == "a"]
    assert a_history == ["pending", "downloading", "starting", "running"]
    assert got["history"][0]["to"] == "running" and got["history"][0]["component_id"] is None
    assert AuditLog.select().where(AuditLog.action == "business.running", AuditLog.target == "shop").exists()
    assert ComponentMetric.select().count() == 2


def test_failure_fails_the_business_and_rolls_back(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    body = business(component("a", **on("n1")), component("b", **on("n2")), component("c", **on("n1")))
    business_id = deploy(client, body)["business_id"]
    take_jobs(redis_client, "n1"), take_jobs(redis_client, "n2")
    run(redis_client, business_id, "a", "n1")
    report(redis_client, business_id, "b", "n2", "failed", error_message="exited with code 3", exit_code=3)
    wait_until(lambda: status_is(client, business_id, "failed"), what="business failed")
    got = detail(client, business_id)
    assert got["message"] == "component b failed: exited with code 3; rolled back"
    assert (comp(got, "b")["status"], comp(got, "b")["exit_code"]) == ("failed", 3)
    assert {c["component_id"]: c["status"] for c in got["components"]} == {
        "a": "stopping",
        "b": "failed",
        "c": "stopping",
    }
    stops = wait_until(lambda: take_jobs(redis_client, "n1"), what="rollback stops")
    assert sorted((k, p["component_id"], p["generation"]) for k, p in stops) == [("stop", "a", 1), ("stop", "c", 1)]
    assert take_jobs(redis_client, "n2") == []  # the failed one is not stopped again
    report(redis_client, business_id, "a", "n1", "stopped")
    marker = report(redis_client, business_id, "c", "n1", "stopped")
    wait_until(lambda: consumed(redis_client, marker), what="stops applied")
    got = detail(client, business_id)
    assert got["status"] == "failed" and [c["status"] for c in got["components"]] == ["stopped", "failed", "stopped"]
    # A manager without webhook URLs records no alert (they would all be sent, late, once URLs are set).
    assert Alert.select().count() == 0


def test_no_rollback_when_not_asked(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alerts recorded, as by a manager given --alert-url (the duties here have none, so nothing sends them).
    monkeypatch.setattr(alert_events, "_enabled", True)
    body = business(component("a", **on("n1")), component("b", **on("n2")), rollback_on_failure=False)
    business_id = deploy(client, body)["business_id"]
    take_jobs(redis_client, "n1"), take_jobs(redis_client, "n2")
    run(redis_client, business_id, "a", "n1")
    report(redis_client, business_id, "b", "n2", "failed", error_message="image not found")
    wait_until(lambda: status_is(client, business_id, "failed"), what="business failed")
    got = detail(client, business_id)
    assert got["message"] == "component b failed: image not found" and comp(got, "a")["status"] == "running"
    assert take_jobs(redis_client, "n1") == []
    # One business.failed alert recorded with the change, for the duties' sender (tests/e2e/test_alerts.py).
    (alert,) = Alert.select().where(Alert.event == "business.failed")
    body = json.loads(alert.body)
    assert (body["business_id"], body["reason"], body["id"]) == (business_id, got["message"], alert.event_id)


def test_stop(client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties) -> None:
    business_id = running_shop(client, redis_client)
    answer = client.post(f"/api/businesses/{business_id}/stop")
    assert answer.status_code == 200 and answer.get_json()["message"] == "stopping"
    got = detail(client, business_id)
    assert got["status"] == "stopping" and {c["status"] for c in got["components"]} == {"stopping"}
    assert sorted(p["component_id"] for _, p in take_jobs(redis_client, "n1")) == ["a", "c"]
    assert [(k, p["component_id"], p["generation"]) for k, p in take_jobs(redis_client, "n2")] == [("stop", "b", 1)]
    # Running again on the way down does not undo the stop.
    run(redis_client, business_id, "a", "n1")
    for cid, node_id in (("a", "n1"), ("b", "n2"), ("c", "n1")):
        report(redis_client, business_id, cid, node_id, "stopped", exit_code=-15)
    wait_until(lambda: status_is(client, business_id, "stopped"), what="business stopped")
    assert {c["status"] for c in detail(client, business_id)["components"]} == {"stopped"}
    again = client.post(f"/api/businesses/{business_id}/stop").get_json()
    assert again["message"] == "already stopped" and take_jobs(redis_client, "n1") == []
    assert AuditLog.select().where(AuditLog.action == "business.stop").count() == 1


def test_restart_bumps_the_generation_on_the_same_nodes(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    business_id = running_shop(client, redis_client)
    assert client.post(f"/api/businesses/{business_id}/restart").status_code == 200
    got = detail(client, business_id)
    assert got["status"] == "deploying"
    assert {(c["component_id"], c["generation"], c["status"], c["pid"]) for c in got["components"]} == {
        ("a", 2, "pending", None),
        ("b", 2, "pending", None),
        ("c", 2, "pending", None),
    }
    assert sorted((k, p["component_id"], p["generation"]) for k, p in take_jobs(redis_client, "n1")) == [
        ("deploy", "a", 2),
        ("deploy", "c", 2),
    ]
    assert [(k, p["component_id"], p["generation"]) for k, p in take_jobs(redis_client, "n2")] == [("deploy", "b", 2)]
    # The agent winds the old generation down: those reports are ignored.
    report(redis_client, business_id, "a", "n1", "stopped", generation=1)
    report(redis_client, business_id, "b", "n2", "failed", generation=1, error_message="old one")
    for cid, node_id in (("a", "n1"), ("b", "n2"), ("c", "n1")):
        run(redis_client, business_id, cid, node_id, generation=2, pid=200)
    wait_until(lambda: status_is(client, business_id, "running"), what="running again")
    assert {c["pid"] for c in detail(client, business_id)["components"]} == {200}


def test_restart_moves_a_component_off_an_offline_node(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None
) -> None:
    add_node(client, redis_client, "n3", cpu=4, memory_mb=4096, labels={"role": "a"})
    business_id = deploy(
        client,
        business(component("x", affinity={"node_labels": {"role": "a"}}, resource_requirements={"cpu_cores": 4})),
    )["business_id"]
    first = detail(client, business_id)
    assert comp(first, "x")["node_id"] == "n1"  # equal nodes: the lower id wins
    take_jobs(redis_client, "n1"), take_jobs(redis_client, "n3")
    redis_client.delete(keys.node_summary("n1"))  # n1 goes silent
    beat(redis_client, "n3", interval=5.0)
    assert client.post(f"/api/businesses/{business_id}/restart").status_code == 200
    x = comp(detail(client, business_id), "x")
    assert (x["node_id"], x["generation"]) == ("n3", 2)
    assert [(k, p["generation"]) for k, p in take_jobs(redis_client, "n1")] == [("stop", 1)]
    assert [(k, p["generation"]) for k, p in take_jobs(redis_client, "n3")] == [("deploy", 2)]


def test_update_touches_only_what_differs(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    business_id = running_shop(client, redis_client)
    new = business(
        component("a", **on("n1")),  # unchanged
        component("b", command="run-b --v2", **on("n2")),  # changed
        component("d", **on("n2")),  # added; c dropped
        business_name="shop v2",
    )
    answer = client.put(f"/api/businesses/{business_id}", json=new)
    assert answer.status_code == 200, answer.get_json()
    summary = answer.get_json()
    assert (summary["removed"], summary["changed"], summary["added"], summary["unchanged"]) == (
        ["c"],
        ["b"],
        ["d"],
        ["a"],
    )
    got = detail(client, business_id)
    assert (got["status"], got["business_name"]) == ("updating", "shop v2")
    assert (comp(got, "a")["pid"], comp(got, "a")["generation"], comp(got, "a")["status"]) == (101, 1, "running")
    assert (comp(got, "b")["generation"], comp(got, "b")["status"]) == (2, "pending")
    assert (comp(got, "c")["desired"], comp(got, "c")["status"]) == ("removed", "stopping")
    assert [(k, p["component_id"], p["generation"]) for k, p in take_jobs(redis_client, "n1")] == [("stop", "c", 1)]
    n2 = [(k, p["component_id"], p["generation"], p["command"]) for k, p in take_jobs(redis_client, "n2")]
    assert n2 == [("deploy", "b", 2, "run-b --v2"), ("deploy", "d", 1, "run-d")]
    run(redis_client, business_id, "b", "n2", generation=2)
    run(redis_client, business_id, "d", "n2")
    wait_until(lambda: comp(detail(client, business_id), "d")["status"] == "running", what="d running")
    assert detail(client, business_id)["status"] == "updating"  # c not gone yet
    report(redis_client, business_id, "c", "n1", "stopped")
    wait_until(lambda: status_is(client, business_id, "running"), what="update done")
    assert [c["component_id"] for c in detail(client, business_id)["components"]] == ["a", "b", "d"]
    # The same body again changes nothing and sends nothing.
    same = client.put(f"/api/businesses/{business_id}", json={**new, "business_id": business_id}).get_json()
    assert same["message"] == "nothing to change"
    assert take_jobs(redis_client, "n1") == [] and take_jobs(redis_client, "n2") == []


def test_update_that_does_not_fit_changes_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    business_id = running_shop(client, redis_client)
    before = detail(client, business_id)
    new = business(component("a", resource_requirements={"cpu_cores": 64}, **on("n1")), component("b", **on("n2")))
    got = client.put(f"/api/businesses/{business_id}", json=new)
    assert got.status_code == 409 and "host-n1: cpu 4 cores free < 64 cores" in got.get_json()["rejections"]["a"]
    after = detail(client, business_id)
    assert after["components"] == before["components"] and after["status"] == "running"
    assert take_jobs(redis_client, "n1") == [] and take_jobs(redis_client, "n2") == []


def test_node_offline_fails_its_components_and_a_late_node_revives_them(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1", labels={"role": "a"}, interval=0.5)
    add_node(client, redis_client, "n2", labels={"role": "b"})
    business_id = deploy(client, business(component("a", **on("n1")), component("b", **on("n2"))))["business_id"]
    run(redis_client, business_id, "a", "n1")
    run(redis_client, business_id, "b", "n2")
    wait_until(lambda: status_is(client, business_id, "running") or status_is(client, business_id, "failed"))
    wait_until(lambda: status_is(client, business_id, "failed"), timeout=5, what="n1 seen offline")
    got = detail(client, business_id)
    assert (comp(got, "a")["status"], comp(got, "a")["error_message"]) == ("failed", "node host-n1 offline")
    assert comp(got, "b")["status"] == "running" and got["message"] == "component a failed: node host-n1 offline"
    # n1 was only late: its agent says the component still runs.
    beat(redis_client, "n1", interval=5.0)
    run(redis_client, business_id, "a", "n1")
    wait_until(lambda: status_is(client, business_id, "running"), what="revived")


def test_usage_history_is_kept_bounded_and_pruned(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, settings: Settings, app: Flask
) -> None:
    with running_duties(replace(settings, component_metrics_every_seconds=60.0)):
        business_id = deploy(client, business(component("a", **on("n1"))))["business_id"]
        for _ in range(3):
            marker = run(redis_client, business_id, "a", "n1")
        wait_until(lambda: consumed(redis_client, marker), what="reports applied")
        assert ComponentMetric.select().count() == 1  # one sample a minute at most
    row = BusinessComponent.get()
    old = utcnow() - timedelta(hours=30)
    ComponentMetric.insert_many(
        [
            {"component": row.id, "timestamp": old + timedelta(minutes=i), "cpu_percent": 1.0, "memory_mb": 2.0}
            for i in range(5)
        ]
    ).execute()
    assert business_upkeep.prune_metrics(24.0) == 5
    assert ComponentMetric.select().count() == 1


def test_a_restarted_manager_loses_nothing(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, settings: Settings, app: Flask
) -> None:
    business_id = deploy(client, business(component("a", **on("n1")), component("b", **on("n2"))))["business_id"]
    before = detail(client, business_id)
    close_app(app)
    db.close()
    # A new app and new duties on the same database and Redis, as after `manager` restarts.
    second = create_app(settings)
    try:
        with running_duties(settings):
            again = second.test_client()
            assert detail(again, business_id) == before
            run(redis_client, business_id, "a", "n1")
            run(redis_client, business_id, "b", "n2")
            wait_until(lambda: status_is(again, business_id, "running"), what="running after the restart")
    finally:
        close_app(second)


def test_stop_mid_deploy_then_restart_and_update_retry_what_is_not_running(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, duties: Duties
) -> None:
    business_id = deploy(client, business(component("a", **on("n1")), component("b", **on("n2"))))["business_id"]
    take_jobs(redis_client, "n1"), take_jobs(redis_client, "n2")
    run(redis_client, business_id, "a", "n1")
    wait_until(lambda: comp(detail(client, business_id), "a")["status"] == "running", what="a running")
    client.post(f"/api/businesses/{business_id}/stop")  # b is still pending: it is stopped too
    assert [(k, p["component_id"]) for k, p in take_jobs(redis_client, "n2")] == [("stop", "b")]
    report(redis_client, business_id, "a", "n1", "stopped")
    report(redis_client, business_id, "b", "n2", "stopped", error_message="component unknown on this node")
    wait_until(lambda: status_is(client, business_id, "stopped"), what="stopped")
    take_jobs(redis_client, "n1")

    client.post(f"/api/businesses/{business_id}/restart")
    assert [(k, p["generation"]) for k, p in take_jobs(redis_client, "n1")] == [("deploy", 2)]
    assert [(k, p["generation"]) for k, p in take_jobs(redis_client, "n2")] == [("deploy", 2)]
    run(redis_client, business_id, "a", "n1", generation=2)
    report(redis_client, business_id, "b", "n2", "failed", generation=2, error_message="exited with code 1")
    wait_until(lambda: status_is(client, business_id, "failed"), what="failed")
    wait_until(lambda: take_jobs(redis_client, "n1"), what="rollback of a")  # a was part of the restart

    # The same spec again: nothing differs, but nothing runs as wanted either, so both get a new generation.
    same = business(component("a", **on("n1")), component("b", **on("n2")))
    answer = client.put(f"/api/businesses/{business_id}", json=same).get_json()
    assert (answer["changed"], answer["unchanged"]) == (["a", "b"], [])
    assert [(k, p["generation"]) for k, p in take_jobs(redis_client, "n2")] == [("deploy", 3)]
    assert detail(client, business_id)["status"] == "updating"


def test_deploys_and_stops_that_go_unanswered_are_sent_again(
    client: FlaskClient, redis_client: redis_lib.Redis, nodes: None, settings: Settings
) -> None:
    """As if Redis had lost the jobs: the duties send a pending deploy and an unfinished stop again, once
    per resend interval, until the node answers; an answered component gets nothing more."""
    with running_duties(replace(settings, component_resend_seconds=1.5)):
        body = business(component("a", **on("n1")), component("b", **on("n2")))
        business_id = deploy(client, body)["business_id"]
        first = take_jobs(redis_client, "n1")
        assert [(k, p["component_id"], p["generation"]) for k, p in first] == [("deploy", "a", 1)]
        take_jobs(redis_client, "n2")  # lost too
        run(redis_client, business_id, "b", "n2")  # b answers; a never does

        again = wait_until(lambda: take_jobs(redis_client, "n1"), timeout=10, what="a's deploy sent again")
        assert again == first  # the same generation: the agent runs it once whatever the copies
        run(redis_client, business_id, "a", "n1")
        wait_until(lambda: status_is(client, business_id, "running"), what="business running")

        assert client.post(f"/api/businesses/{business_id}/stop").status_code == 200
        take_jobs(redis_client, "n1"), take_jobs(redis_client, "n2")  # both stops lost
        report(redis_client, business_id, "b", "n2", "stopped", exit_code=0)
        resent = wait_until(lambda: take_jobs(redis_client, "n1"), timeout=10, what="a's stop sent again")
        assert [(k, p["component_id"], p["generation"]) for k, p in resent] == [("stop", "a", 1)]
        report(redis_client, business_id, "a", "n1", "stopped", exit_code=0)
        wait_until(lambda: status_is(client, business_id, "stopped"), what="business stopped")
        assert take_jobs(redis_client, "n2") == []  # b answered: never sent again
