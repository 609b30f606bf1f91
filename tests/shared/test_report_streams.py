"""Task events through the shared stream helpers, on a real redis-server."""

from __future__ import annotations

import pytest
import redis
from marshmallow import ValidationError

from shared import keys, report_streams


def test_publish_then_parse(redis_client: redis.Redis) -> None:
    event = {"task_id": "t1", "deployment_id": "d1", "node_id": "n1", "state": "FAILED", "at": 1.5, "exit_code": 3}
    report_streams.publish(redis_client, event, key=b"k" * 32)
    [(_, fields)] = redis_client.xrange(keys.node_reports("n1"))
    kind, parsed = report_streams.parse_report(fields, "n1", key_of=lambda _node: b"k" * 32)
    assert kind == report_streams.EVENT
    assert parsed["exit_code"] == 3
    assert parsed["state"] == "FAILED"
    assert parsed["pid"] is None


def test_a_report_is_believed_only_in_the_stream_of_the_node_that_signed_it(redis_client: redis.Redis) -> None:
    node_keys = {"n1": b"1" * 32, "n2": b"2" * 32}
    event = {"task_id": "t1", "deployment_id": "d1", "node_id": "n1", "state": "RUNNING", "at": 1.5}
    report_streams.publish(redis_client, event, key=node_keys["n1"])
    [(_, fields)] = redis_client.xrange(keys.node_reports("n1"))
    with pytest.raises(report_streams.UnsignedMessage):
        report_streams.parse_report(fields, "n2", key_of=node_keys.__getitem__)  # copied into another node's stream
    report_streams.publish(redis_client, event, key=node_keys["n2"])  # n2 speaking for n1
    with pytest.raises(report_streams.UnsignedMessage):
        report_streams.parse_report(
            redis_client.xrange(keys.node_reports("n1"))[1][1], "n1", key_of=node_keys.__getitem__
        )


def test_unknown_state_is_refused_before_it_reaches_redis(redis_client: redis.Redis) -> None:
    with pytest.raises(ValidationError):
        report_streams.publish(
            redis_client, {"task_id": "t", "deployment_id": "d", "node_id": "n", "state": "EXPLODED", "at": 0}
        )
    assert redis_client.xlen(keys.node_reports("n")) == 0


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValidationError):
        report_streams.parse_report({b"kind": b"event", b"body": b'{"task_id": 1}'}, "n")
    with pytest.raises(ValueError):
        report_streams.parse_report({b"kind": b"bogus", b"body": b"{}"}, "n")


@pytest.mark.parametrize("field", ["app", "instance_id"])
def test_an_instance_report_naming_an_unsafe_id_is_refused_before_it_reaches_redis(
    redis_client: redis.Redis, field: str
) -> None:
    # The manager answers a report of an unwanted instance with a stop naming its app and id: they must be ids.
    report = {"app": "web", "instance_id": "web-1", "node_id": "n1", "version": 1, "state": "running"}
    report |= {"health": "healthy", "at": 1.0, field: "../etc"}
    with pytest.raises(ValidationError):
        report_streams.publish_instance_report(redis_client, report)
    assert redis_client.xlen(keys.node_reports("n1")) == 0
    report_streams.publish_instance_report(redis_client, report | {field: "ok-id"})
    assert redis_client.xlen(keys.node_reports("n1")) == 1
