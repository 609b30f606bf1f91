"""DELETE /api/businesses/{id}: only once nothing of it may still run; an id used again starts above the old
generations (agents keep ended ones a day and ignore a deploy of one they hold); a taken id says what to do."""

from __future__ import annotations

import json

import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.background.duties import Duties
from manager_api.models import AuditLog, Business, BusinessComponent, BusinessHistory, ComponentMetric
from shared import keys
from tests.support import wait_until

from .business_helpers import add_node, business, comp, component, consumed, deploy, detail, report, take_jobs
from .conftest import answer


def status_is(client: FlaskClient, business_id: str, status: str) -> bool:
    return bool(detail(client, business_id)["status"] == status)


def run(redis_client: redis_lib.Redis, business_id: str, cid: str, generation: int = 1) -> str:
    report(redis_client, business_id, cid, "n1", "starting", generation)
    usage = {"cpu_percent": 1.0, "memory_mb": 10, "gpu_percent": None}
    return report(redis_client, business_id, cid, "n1", "running", generation, pid=100, resource_usage=usage)


def nothing_left(business_id: str) -> bool:
    return not (
        Business.select().where(Business.business_id == business_id).exists()
        or BusinessComponent.select().where(BusinessComponent.business == business_id).exists()
        or BusinessHistory.select().where(BusinessHistory.business == business_id).exists()
        or ComponentMetric.select().exists()
    )


def deleted_entries() -> list[AuditLog]:
    return list(AuditLog.select().where(AuditLog.action == "business.deleted"))


def test_a_business_goes_once_stopped_with_its_components_and_history(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a"), component("b"), business_id="shop"))
    take_jobs(redis_client, "n1")
    run(redis_client, "shop", "a"), run(redis_client, "shop", "b")
    wait_until(lambda: status_is(client, "shop", "running"), what="shop running")

    running = answer(client.delete("/api/businesses/shop"), 409)
    assert running["error"] == "Business shop is running: stop it first: POST /api/businesses/shop/stop"
    assert (running["status"], running["business_id"], running["business_status"]) == ("error", "shop", "running")
    answer(client.post("/api/businesses/shop/stop"))
    stopping = answer(client.delete("/api/businesses/shop"), 409)
    assert stopping["error"].startswith("Business shop is stopping: stop it first")
    assert not deleted_entries() and Business.select().count() == 1

    report(redis_client, "shop", "a", "n1", "stopped"), report(redis_client, "shop", "b", "n1", "stopped")
    wait_until(lambda: status_is(client, "shop", "stopped"), what="shop stopped")
    assert ComponentMetric.select().count() > 0  # usage history, which goes with it
    assert answer(client.delete("/api/businesses/shop")) == {
        "status": "success",
        "message": "deleted",
        "business_id": "shop",
    }
    assert nothing_left("shop")
    gone = answer(client.get("/api/businesses/shop"), 404)
    assert gone["error"] == "Business not found" and gone["business_id"] == "shop"
    assert answer(client.get("/api/businesses"))["total"] == 0
    (entry,) = deleted_entries()
    assert (entry.target, entry.actor) == ("shop", "anonymous@127.0.0.1")
    assert json.loads(entry.detail) == {"name": "shop", "status": "stopped", "components": 2}
    # Its reports still in flight are dropped quietly, and its reservations are free again.
    marker = report(redis_client, "shop", "a", "n1", "stopped")
    wait_until(lambda: consumed(redis_client, marker), what="late report consumed")
    assert answer(client.get("/api/nodes/n1"))["reserved"]["cpu_cores"] == 0.0
    assert answer(client.delete("/api/businesses/shop"), 404)["error"] == "Business not found"


def test_unknown_business_is_404(client: FlaskClient) -> None:
    for business_id in ("nope", "x" * 100):
        got = answer(client.delete(f"/api/businesses/{business_id}"), 404)
        assert (got["error"], got["status"]) == ("Business not found", "error")


def test_a_failed_business_goes_when_its_nodes_said_everything_ended(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a"), business_id="crash"))
    take_jobs(redis_client, "n1")
    report(redis_client, "crash", "a", "n1", "failed", exit_code=1, error_message="exited with code 1")
    wait_until(lambda: status_is(client, "crash", "failed"), what="crash failed")
    assert answer(client.delete("/api/businesses/crash"))["message"] == "deleted"
    assert nothing_left("crash") and len(deleted_entries()) == 1


def test_a_component_failed_with_its_node_may_still_run_there(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a"), business_id="lost"))
    take_jobs(redis_client, "n1")
    run(redis_client, "lost", "a")
    wait_until(lambda: status_is(client, "lost", "running"), what="lost running")
    redis_client.delete(keys.node_summary("n1"))  # n1 goes silent
    wait_until(lambda: status_is(client, "lost", "failed"), what="n1 seen offline")
    assert comp(detail(client, "lost"), "a")["error_message"] == "node host-n1 offline"
    refused = answer(client.delete("/api/businesses/lost"), 409)
    assert refused["error"] == (
        "Business lost is failed but components a may still run (not ended, or their node went offline with "
        "them): stop it first: POST /api/businesses/lost/stop"
    )
    # The stop leaves n1 what to do when it is back; then nothing is left to follow.
    answer(client.post("/api/businesses/lost/stop"))
    assert status_is(client, "lost", "stopped")
    assert [(kind, p["component_id"]) for kind, p in take_jobs(redis_client, "n1")] == [("stop", "a")]
    assert answer(client.delete("/api/businesses/lost"))["message"] == "deleted"


def test_an_id_deployed_again_starts_above_the_generations_of_the_deleted_one(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a"), business_id="shop"))
    answer(client.post("/api/businesses/shop/restart"))
    assert comp(detail(client, "shop"), "a")["generation"] == 2
    take_jobs(redis_client, "n1")
    answer(client.post("/api/businesses/shop/stop"))
    report(redis_client, "shop", "a", "n1", "stopped", generation=2)
    wait_until(lambda: status_is(client, "shop", "stopped"), what="shop stopped")
    answer(client.delete("/api/businesses/shop"))
    take_jobs(redis_client, "n1")

    deploy(client, business(component("a"), component("b"), business_id="shop"))
    got = detail(client, "shop")
    assert [(c["component_id"], c["generation"]) for c in got["components"]] == [("a", 3), ("b", 3)]
    assert [(p["component_id"], p["generation"]) for _, p in take_jobs(redis_client, "n1")] == [("a", 3), ("b", 3)]
    run(redis_client, "shop", "a", generation=3), run(redis_client, "shop", "b", generation=3)
    wait_until(lambda: status_is(client, "shop", "running"), what="shop running again")
    # A taken id says what to do instead.
    taken = answer(client.post("/api/businesses", json=business(component("a"), business_id="shop")), 409)
    assert taken["error"] == "Business shop already exists: update it with PUT /api/businesses/shop"
    assert (taken["status"], taken["message"], taken["business_id"]) == ("error", taken["error"], "shop")


def test_a_component_an_update_adds_back_starts_above_its_old_generation(
    client: FlaskClient, redis_client: redis_lib.Redis, duties: Duties
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a"), component("b"), business_id="shop"))
    take_jobs(redis_client, "n1")
    answer(client.put("/api/businesses/shop", json=business(component("a"))))
    report(redis_client, "shop", "b", "n1", "stopped")
    wait_until(lambda: [c["component_id"] for c in detail(client, "shop")["components"]] == ["a"], what="b gone")
    take_jobs(redis_client, "n1")
    # n1 still holds b's generation 1 (stopped): a deploy of generation 1 would be taken for a redelivery.
    answer(client.put("/api/businesses/shop", json=business(component("a"), component("b"))))
    assert comp(detail(client, "shop"), "b")["generation"] == 2
    assert [(p["component_id"], p["generation"]) for _, p in take_jobs(redis_client, "n1")] == [("b", 2)]
