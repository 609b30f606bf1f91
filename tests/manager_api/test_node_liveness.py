"""One liveness rule: every reader judges a node at the edge of its offline window the same way.

Real Redis and database; only the Redis time the readers compare heartbeats with is driven, so that "exactly
at the end of the window" and "just past it" can be read at all.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from manager_api.api.presenters import nodes as node_presenters
from manager_api.models import BusinessComponent, Node
from manager_api.services import job_keys
from manager_api.services.businesses import upkeep as business_upkeep
from manager_api.services.fleet_tasks import actions as fleet_tasks
from manager_api.services.fleet_tasks import targets
from manager_api.services.nodes import inventory, liveness, manual_list, snapshot
from manager_api.services.placement import candidates
from manager_api.services.placement.candidates import load_nodes
from manager_api.services.placement.engine import plan
from manager_api.services.placement.model import Demand
from manager_api.services.placement.task_groups import GroupRequest, PlacementError, TaskRequest, place
from manager_api.services.serialize import from_unix
from shared import heartbeat, keys
from shared.states import NodeStatus

from .business_helpers import add_node, business, component, deploy

INTERVALS = 3


def _drive_clock(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    """Make every liveness read see Redis's time as ``now`` (the summaries and the grace stay as read)."""
    real = heartbeat.read_raw_values

    def at_now(redis: redis_lib.Redis, node_ids: Any) -> tuple[float, list[bytes | None], heartbeat.Grace | None]:
        _now, values, grace = real(redis, node_ids)
        return now, values, grace

    monkeypatch.setattr(heartbeat, "read_raw_values", at_now)


def _deployment_target(redis_client: redis_lib.Redis) -> bool:
    try:
        place([GroupRequest(0, (TaskRequest("t"),))], candidates.node_loads(redis_client, INTERVALS))
    except PlacementError:
        return False
    return True


def _verdicts(redis_client: redis_lib.Redis) -> dict[str, bool]:
    """Whether n1 reads online to each reader of liveness, the duties' judging last (it writes Node.status)."""
    Node.update(status=int(NodeStatus.OFFLINE)).execute()  # as the duties left it: upkeep confirms it live
    business_upkeep.fail_components_on_offline_nodes(redis_client, INTERVALS, 10.0)
    (listed,) = node_presenters.manual_list_json(manual_list.read(redis_client, INTERVALS))
    (host,) = targets.resolve(["host-n1"], fleet_tasks._target_nodes(redis_client, INTERVALS, ["host-n1"]))
    liveness.refresh_statuses(redis_client, INTERVALS)
    return {
        "snapshot": snapshot.read(redis_client, ["n1"], INTERVALS).is_online("n1"),
        "node list": listed["status"] == int(NodeStatus.ONLINE) and listed["ready"],
        "inventory": node_presenters.inventory_json(inventory.listing(redis_client, INTERVALS))[0]["status"]
        == "online",
        "business placement": plan(load_nodes(redis_client, INTERVALS), [Demand("c")]).ok,
        "deployment placement": _deployment_target(redis_client),
        "fleet task target": host.error is None,
        "business upkeep": BusinessComponent.get().status != "failed",
        "duties' judging": Node.get_by_id("n1").status == int(NodeStatus.ONLINE),
    }


def test_every_reader_agrees_at_the_edge_of_the_offline_window(
    client: FlaskClient, redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_node(client, redis_client, "n1")
    deploy(client, business(component("a")))  # pending on n1: what business upkeep fails when n1 is offline
    summary = snapshot.read(redis_client, ["n1"], INTERVALS).summary("n1")
    assert summary is not None
    edge = summary.online_until(INTERVALS)

    _drive_clock(monkeypatch, edge)
    verdicts = _verdicts(redis_client)
    assert verdicts == dict.fromkeys(verdicts, True), "exactly at the edge: online"

    _drive_clock(monkeypatch, math.nextafter(edge, math.inf))
    verdicts = _verdicts(redis_client)
    assert verdicts == dict.fromkeys(verdicts, False), "just past the edge: offline"


def test_the_snapshot_judges_again_when_the_setting_or_the_grace_changes(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "n1")
    live = snapshot.read(redis_client, ["n1", "never-seen"], INTERVALS)
    assert live.is_ready("n1") and live.is_online("n1") and live.summary("never-seen") is None
    # The same summary, already judged, read with no window at all: offline, then online again.
    assert not snapshot.read(redis_client, ["n1"], 0).is_online("n1")
    assert snapshot.read(redis_client, ["n1"], INTERVALS).is_online("n1")
    # A grace granted by the duties (judging just resumed) keeps it online for a window from the resume.
    now = heartbeat.redis_now(redis_client)
    redis_client.set(keys.LIVENESS_JUDGED, repr(now))
    redis_client.set(keys.LIVENESS_GRACE, f"{now - 60!r} {now + 100!r}")
    live = snapshot.read(redis_client, ["n1"], 0)
    assert live.is_online("n1") and live.grace is not None and live.summaries["n1"].grace == live.grace
    # An unsigned summary (another node writing for n1) is no summary at all.
    heartbeat.write(redis_client, "n1", {"interval": 5})
    assert snapshot.read(redis_client, ["n1"], INTERVALS).summary("n1") is None


def test_the_duties_persist_status_flips_and_a_last_seen_at_most_a_minute_old(
    client: FlaskClient, redis_client: redis_lib.Redis
) -> None:
    add_node(client, redis_client, "fresh")
    add_node(client, redis_client, "stale")
    add_node(client, redis_client, "silent", online=False)
    assert {flip[0] for flip in liveness.refresh_statuses(redis_client, INTERVALS)} == {"fresh", "stale"}
    beats = {n: snapshot.read(redis_client, [n], INTERVALS).summary(n).ts for n in ("fresh", "stale")}  # type: ignore[union-attr]
    stored = {node.id: node for node in Node.select()}
    assert [stored[n].status for n in ("fresh", "stale", "silent")] == [int(NodeStatus.ONLINE)] * 2 + [
        int(NodeStatus.OFFLINE)
    ]
    assert stored["fresh"].last_seen == from_unix(beats["fresh"]) and stored["silent"].last_seen is None

    # Written 30 s before the heartbeat: left alone; 61 s before: written again. No flip either way.
    kept = datetime(2026, 1, 1, 12, 0, 0)
    Node.update(last_seen=from_unix(beats["fresh"] - 30)).where(Node.id == "fresh").execute()
    Node.update(last_seen=from_unix(beats["stale"] - 61)).where(Node.id == "stale").execute()
    Node.update(last_seen=kept).where(Node.id == "silent").execute()
    assert liveness.refresh_statuses(redis_client, INTERVALS) == []
    assert Node.get_by_id("fresh").last_seen == from_unix(beats["fresh"] - 30)
    assert Node.get_by_id("stale").last_seen == from_unix(beats["stale"])
    assert Node.get_by_id("silent").last_seen == kept  # no heartbeat: nothing newer to write

    # Gone silent: the flip is stored with the last heartbeat's time.
    redis_client.delete(keys.node_summary("stale"))
    assert liveness.refresh_statuses(redis_client, INTERVALS) == [("stale", "host-stale", NodeStatus.OFFLINE)]
    assert Node.get_by_id("stale").status == int(NodeStatus.OFFLINE)
    assert Node.get_by_id("stale").last_seen == from_unix(beats["stale"])


def _fresh(redis_client: redis_lib.Redis, ids: list[str], intervals: int) -> snapshot.Snapshot:
    """The snapshot judged from nothing kept (every per-process cache emptied first)."""
    snapshot._by_ids.clear()
    snapshot._judged.clear()
    return snapshot.read(redis_client, ids, intervals)


def test_a_list_read_again_is_judged_as_if_read_afresh(
    client: FlaskClient, redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judgments kept by position for a list of ids read again: only the changed values are judged again, and
    every read answers what a read with nothing kept answers (new heartbeats, a summary gone, a forged one, the
    window or the grace changed, a heartbeat grown old)."""
    monkeypatch.setattr(snapshot, "SHORTEST_LIST_KEPT", 1)  # lists as short as the test's kept too
    for node_id in ("n1", "n2", "n3"):
        add_node(client, redis_client, node_id)
    ids = ["n1", "n2", "n3", "never-seen"]

    def same(intervals: int = INTERVALS) -> None:
        kept = snapshot.read(redis_client, ids, intervals)
        assert tuple(ids) in snapshot._by_ids
        fresh = _fresh(redis_client, ids, intervals)
        assert (kept.online, kept.ready, dict(kept.summaries), dict(kept.raw), kept.up) == (
            fresh.online,
            fresh.ready,
            dict(fresh.summaries),
            dict(fresh.raw),
            fresh.up,
        )
        snapshot.read(redis_client, ids, intervals)  # kept again for the next step

    same()
    same()  # nothing changed
    beat = {"interval": 5.0, "cpu_usage_percent": 50.0, "memory_usage_percent": 1.0, "taking_jobs": False}
    heartbeat.write(redis_client, "n2", beat, key=job_keys.node_key("n2"))
    same()
    redis_client.delete(keys.node_summary("n3"))
    same()
    heartbeat.write(redis_client, "n1", {"interval": 5})  # unsigned: no summary
    same()
    same(0)  # no window at all: every node offline
    now = heartbeat.redis_now(redis_client)
    redis_client.set(keys.LIVENESS_JUDGED, repr(now))
    redis_client.set(keys.LIVENESS_GRACE, f"{now - 60!r} {now + 100!r}")
    same(0)
    redis_client.delete(keys.LIVENESS_GRACE)
    same()
    _drive_clock(monkeypatch, now + 3600)  # an hour later: every heartbeat grown old, the same values
    same()
    assert not snapshot.read(redis_client, ids, INTERVALS).online
