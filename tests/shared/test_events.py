"""Task events through the shared stream helpers, on a real redis-server."""

from __future__ import annotations

import pytest
import redis
from marshmallow import ValidationError

from shared import events, keys


def test_publish_then_parse(redis_client: redis.Redis) -> None:
    event = {"task_id": "t1", "deployment_id": "d1", "node_id": "n1", "state": "FAILED", "at": 1.5, "exit_code": 3}
    events.publish(redis_client, event)
    [(_, fields)] = redis_client.xrange(keys.EVENTS_STREAM)
    parsed = events.parse(fields)
    assert parsed["exit_code"] == 3
    assert parsed["state"] == "FAILED"
    assert parsed["pid"] is None


def test_unknown_state_is_refused_before_it_reaches_redis(redis_client: redis.Redis) -> None:
    with pytest.raises(ValidationError):
        events.publish(
            redis_client, {"task_id": "t", "deployment_id": "d", "node_id": "n", "state": "EXPLODED", "at": 0}
        )
    assert redis_client.xlen(keys.EVENTS_STREAM) == 0


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValidationError):
        events.parse({b"event": b'{"task_id": 1}'})
