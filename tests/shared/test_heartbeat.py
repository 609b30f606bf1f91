"""Heartbeats written and read through shared/heartbeat.py against a real redis-server."""

from __future__ import annotations

import redis

from shared import heartbeat, keys


def test_write_then_read_round_trips_figures_and_stamps_redis_time(redis_client: redis.Redis) -> None:
    before = heartbeat.redis_now(redis_client)
    stamped = heartbeat.write(
        redis_client, "n1", {"interval": 5, "cpu_usage_percent": 12.5, "hostname": "web-1", "bogus": "x"}
    )
    now, beats = heartbeat.read(redis_client, ["n1", "never-seen"])
    assert before <= stamped <= now
    assert beats["n1"]["cpu_usage_percent"] == "12.5"
    assert beats["n1"]["hostname"] == "web-1"
    assert "bogus" not in beats["n1"]
    assert float(beats["n1"]["ts"]) == stamped
    assert beats["never-seen"] == {}
    assert redis_client.zscore(keys.NODES_SEEN, "n1") == stamped


def test_online_until_three_intervals_pass() -> None:
    beat = {"ts": "100.0", "interval": "5"}
    assert heartbeat.is_online(beat, now=114.9, offline_after_intervals=3)
    assert not heartbeat.is_online(beat, now=115.1, offline_after_intervals=3)
    assert not heartbeat.is_online({}, now=100.0, offline_after_intervals=3)
    assert not heartbeat.is_online({"ts": "garbage"}, now=100.0, offline_after_intervals=3)
