"""One batch of agents' reports on the real database and Redis: savepoints, dropped reports, acks after commit."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from peewee import OperationalError

from manager_api.models import AuditLog
from manager_api.services import audit, report_batches
from manager_api.services.report_batches import Report, ReportKind
from shared import acks, keys


def store(report: Report) -> str:
    """Writes one audit row per report; "bad" writes one and then raises, "busy" is the database failing."""
    audit.record("test", "report", report["id"])
    if report["id"] == "bad":
        raise ValueError("a report this kind cannot hold")
    if report["id"] == "busy":
        raise OperationalError("database is locked")
    return str(report["id"])


def kind(settled: list[list[str]]) -> ReportKind[str, int]:
    def settle(stored: list[tuple[Report, str]]) -> int:
        settled.append([name for _, name in stored])
        audit.record("test", "settled", ",".join(name for _, name in stored))
        return len(stored)

    return ReportKind(
        what="test report",
        about=lambda report: f"report {report['id']}",
        store=store,
        settle=settle,
        ack_kind=acks.COMMAND,
        ack_name=lambda report: report["id"] if report.get("final") else None,
    )


def report(node_id: str, report_id: str, final: bool = True) -> dict[str, Any]:
    return {"node_id": node_id, "id": report_id, "final": final}


def targets() -> list[str]:
    return [row.target for row in AuditLog.select().order_by(AuditLog.id)]


def test_a_report_that_raises_is_dropped_and_the_others_commit_and_are_acknowledged(
    app: Flask, redis_client: redis_lib.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settled: list[list[str]] = []
    batch = [report("n1", "a"), report("n1", "bad"), report("n2", "b", final=False), report("n2", "c")]
    assert report_batches.apply_and_acknowledge(redis_client, kind(settled), batch) == 3
    assert settled == [["a", "b", "c"]]
    assert targets() == ["a", "b", "c", "a,b,c"]  # the bad report's own row went with its savepoint
    dropped = [r for r in caplog.records if "could not be applied; dropped" in r.getMessage()]
    assert len(dropped) == 1 and "report bad from node n1" in dropped[0].getMessage() and dropped[0].exc_info
    # Final reports are acknowledged, the dropped one too; one not final yet is not.
    assert redis_client.smembers(keys.node_acked("n1")) == {b"command:a", b"command:bad"}
    assert redis_client.smembers(keys.node_acked("n2")) == {b"command:c"}


def test_a_busy_database_fails_the_whole_batch_and_nothing_is_acknowledged(
    app: Flask, redis_client: redis_lib.Redis
) -> None:
    settled: list[list[str]] = []
    with pytest.raises(OperationalError):
        report_batches.apply_and_acknowledge(redis_client, kind(settled), [report("n1", "a"), report("n1", "busy")])
    assert settled == [] and targets() == []
    assert not redis_client.exists(keys.node_acked("n1"))


def test_tell_queues_before_the_acks_on_the_same_pipeline(app: Flask, redis_client: redis_lib.Redis) -> None:
    told: list[int] = []
    report_batches.apply_and_acknowledge(
        redis_client, kind([]), [report("n1", "a")], lambda pipe, settled: told.append(settled)
    )
    assert told == [1] and redis_client.smembers(keys.node_acked("n1")) == {b"command:a"}


def test_store_many_stores_a_batch_at_once_and_one_it_cannot_store_goes_again_report_by_report(
    app: Flask, redis_client: redis_lib.Redis
) -> None:
    settled: list[list[str]] = []
    calls: list[int] = []

    def store_many(reports: list[Report]) -> list[tuple[Report, str]]:
        calls.append(len(reports))
        return [(one, store(one)) for one in reports]

    batched = dataclasses.replace(kind(settled), store_many=store_many)
    assert report_batches.apply_and_acknowledge(redis_client, batched, [report("n1", "a"), report("n1", "b")]) == 2
    assert calls == [2] and settled == [["a", "b"]]
    # "bad" fails store_many after rows were written: its savepoint undoes them, and one by one only "bad" is dropped.
    batch = [report("n1", "c"), report("n1", "bad"), report("n1", "d")]
    assert report_batches.apply_and_acknowledge(redis_client, batched, batch) == 2
    assert calls == [2, 3] and settled[-1] == ["c", "d"]
    assert targets() == ["a", "b", "a,b", "c", "d", "c,d"]
