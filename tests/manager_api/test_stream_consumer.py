"""The consumer of every node's reports stream, on a real redis-server: which streams it reads and makes."""

from __future__ import annotations

from typing import Any

import redis as redis_lib

from manager_api.background.stream_consumer import StreamConsumer, StreamHandler
from shared import keys


def test_every_known_nodes_stream_is_swept_and_a_forgotten_ones_is_not_made_again(
    redis_client: redis_lib.Redis,
) -> None:
    known = {"n1", "n2"}
    applied: list[dict[str, Any]] = []
    consumer = StreamConsumer(
        redis_client,
        keys.EVENTS_GROUP,
        "test",
        lambda fields, node_id: ("event", {"node_id": node_id}),
        [StreamHandler("event", "event", apply=applied.extend)],
        lambda: sorted(known),
        sweep_every=0,  # every consume() sweeps
    )
    redis_client.xadd(keys.node_reports("n2"), {"kind": "event"})  # never rung
    consumer.consume(10)
    assert applied == [{"node_id": "n2"}] and redis_client.exists(keys.node_reports("n1"))
    known.discard("n2")  # forgotten: node_removal deletes its keys
    redis_client.delete(keys.node_reports("n2"))
    consumer.consume(10)
    assert not redis_client.exists(keys.node_reports("n2"))
    consumer.reset()
