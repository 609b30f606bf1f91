"""Heartbeats written and read through shared/heartbeat.py against a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis

from shared import heartbeat, keys
from tests import support


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
    # The same stamp as a number: Lua prints six digits of microseconds ("….117100"), repr drops trailing zeros.
    assert float(redis_client.get(keys.node_summary("n1")).split()[0]) == stamped


def test_online_until_three_intervals_pass() -> None:
    beat = {"ts": "100.0", "interval": "5"}
    assert heartbeat.is_online(beat, now=114.9, offline_after_intervals=3)
    assert not heartbeat.is_online(beat, now=115.1, offline_after_intervals=3)
    assert not heartbeat.is_online({}, now=100.0, offline_after_intervals=3)
    assert not heartbeat.is_online({"ts": "garbage"}, now=100.0, offline_after_intervals=3)


def test_a_summary_is_believed_only_when_its_node_signed_it_and_dated_by_the_signed_time(
    redis_client: redis.Redis,
) -> None:
    """Where agents share one Redis user (--agent-redis-url), one must not keep another node looking alive."""
    node_keys = {"n1": b"1" * 32, "n2": b"2" * 32}
    key_of = node_keys.__getitem__
    offset = heartbeat.redis_now(redis_client) - time.time()
    stamped = heartbeat.write(redis_client, "n1", {"interval": 5, "cpu_usage_percent": 12.5}, node_keys["n1"], offset)
    now, beats = heartbeat.read_summaries(redis_client, ["n1"], key_of)
    assert beats["n1"].cpu_usage_percent == 12.5 and abs(beats["n1"].ts - stamped) < 1.0
    assert beats["n1"].online(now, 3)

    # n2 writing for n1, unsigned or signed with its own key: n1 reads as never heard from.
    heartbeat.write(redis_client, "n1", {"interval": 5}, None, offset)
    assert "n1" not in heartbeat.read_summaries(redis_client, ["n1"], key_of)[1]
    heartbeat.write(redis_client, "n1", {"interval": 5}, node_keys["n2"], offset)
    assert "n1" not in heartbeat.read_summaries(redis_client, ["n1"], key_of)[1]
    # Without key_of (an agent's own tools) the figures still read.
    assert heartbeat.read_summaries(redis_client, ["n1"])[1]["n1"].interval == 5.0

    # An old signed summary put back in place (the Redis stamp fresh, the signed time not) goes stale.
    old = time.time() + offset - 60
    heartbeat.write(redis_client, "n1", {"interval": 5}, node_keys["n1"], offset - 60)
    now, beats = heartbeat.read_summaries(redis_client, ["n1"], key_of)
    assert abs(beats["n1"].ts - old) < 1.0 and not beats["n1"].online(now, 3)
    # Altered figures break the signature.
    raw = redis_client.get(keys.node_summary("n1")).decode().split()
    raw[2] = "99.0"
    redis_client.set(keys.node_summary("n1"), " ".join(raw))
    assert "n1" not in heartbeat.read_summaries(redis_client, ["n1"], key_of)[1]


def test_the_liveness_rule_gives_a_node_online_when_judging_paused_one_window_after_it_resumed() -> None:
    was_online = heartbeat.Summary(ts=100.0, interval=5.0, cpu_usage_percent=0, memory_usage_percent=0)
    assert was_online.online_until(3) == 115.0 and not was_online.online(130.0, 3)
    paused_at_110_resumed_at_125 = was_online._replace(grace=(110.0, 125.0))
    assert paused_at_110_resumed_at_125.online_until(3) == 140.0
    assert paused_at_110_resumed_at_125.online(139.9, 3) and not paused_at_110_resumed_at_125.online(140.1, 3)
    # Offline already when judging paused (115 < 120): the resume gives it nothing.
    assert was_online._replace(grace=(120.0, 125.0)).online_until(3) == 115.0
    # A fresh heartbeat keeps its own window when that is longer.
    assert was_online._replace(grace=(90.0, 95.0)).online_until(3) == 115.0


def test_resuming_the_judge_records_the_pause_and_every_reader_applies_it(redis_client: redis.Redis) -> None:
    key = b"k" * 32
    offset = heartbeat.redis_now(redis_client) - time.time()
    ids = ["was-online", "was-offline"]
    assert heartbeat.resume_judging(redis_client, ids, 3) is None  # no judge before: nothing to give
    heartbeat.mark_judged(redis_client)
    judged = float(redis_client.get(keys.LIVENESS_JUDGED))
    redis_client.set(keys.LIVENESS_JUDGED, repr(judged - 20))  # the manager went away 20 s ago
    heartbeat.write(redis_client, "was-online", {"interval": 5}, key, offset - 22)  # 22 s old: online 20 s ago
    heartbeat.write(redis_client, "was-offline", {"interval": 5}, key, offset - 40)  # offline already then
    now, beats = heartbeat.read_summaries(redis_client, ids, lambda _node: key)
    # Nobody judges (the last judgment is 20 s old): readers keep what was online then online meanwhile.
    assert beats["was-online"].online(now, 3) and not beats["was-offline"].online(now, 3)
    redis_client.set(keys.LIVENESS_JUDGED, repr(now - heartbeat.JUDGING_STALE_SECONDS + 1))
    now, beats = heartbeat.read_summaries(redis_client, ids, lambda _node: key)
    assert not beats["was-online"].online(now, 3), "judged a moment ago: the old heartbeat reads offline"
    redis_client.set(keys.LIVENESS_JUDGED, repr(judged - 20))

    grace = heartbeat.resume_judging(redis_client, ids, 3)
    assert grace is not None and abs(grace[1] - grace[0] - 20) < 1.0
    assert 15_000 < redis_client.pttl(keys.LIVENESS_GRACE) <= 20_000  # the longest window, plus 5 s
    now, beats = heartbeat.read_summaries(redis_client, ids, lambda _node: key)
    assert beats["was-online"].online(now, 3) and abs(beats["was-online"].online_until(3) - (grace[1] + 15)) < 1e-6
    assert not beats["was-offline"].online(now, 3)
    _now, raw, raw_grace = heartbeat.read_raw_summaries(redis_client, [*ids, "never-seen"])
    assert raw_grace == grace and set(raw) == {"was-online", "was-offline"}


def test_a_second_resume_soon_after_keeps_the_earlier_pause(redis_client: redis.Redis) -> None:
    key = b"k" * 32
    offset = heartbeat.redis_now(redis_client) - time.time()
    heartbeat.mark_judged(redis_client)
    judged = float(redis_client.get(keys.LIVENESS_JUDGED))
    redis_client.set(keys.LIVENESS_JUDGED, repr(judged - 20))  # Redis died 20 s ago
    heartbeat.write(redis_client, "was-online", {"interval": 5}, key, offset - 22)
    first = heartbeat.resume_judging(redis_client, ["was-online"], 3)  # the manager, as the restarted Redis opens
    # The duties take their lock a moment later: judging "paused" for that moment only, yet the node online
    # when Redis died keeps the grace of the first resume.
    second = heartbeat.resume_judging(redis_client, ["was-online"], 3)
    assert first is not None and second is not None and second[0] == first[0] and second[1] >= first[1]
    now, beats = heartbeat.read_summaries(redis_client, ["was-online"], lambda _node: key)
    assert beats["was-online"].online(now, 3)


def test_a_summary_says_whether_the_worker_takes_jobs_and_the_node_signs_it(redis_client: redis.Redis) -> None:
    key = b"k" * 32
    heartbeat.write(redis_client, "n1", {"interval": 5, "taking_jobs": False}, key)
    raw = redis_client.get(keys.node_summary("n1"))
    summary = heartbeat.parse_summary(raw, "n1", lambda _node: key)
    assert summary is not None and not summary.taking_jobs
    # Another node may not flip it: the flag is signed.
    forged = raw.decode().rsplit(" ", 1)[0] + " 1"
    assert heartbeat.parse_summary(forged, "n1", lambda _node: key) is None
    heartbeat.write(redis_client, "n1", {"interval": 5}, key)
    summary = heartbeat.parse_summary(redis_client.get(keys.node_summary("n1")), "n1", lambda _node: key)
    assert summary is not None and summary.taking_jobs


def test_redis_clock_reads_redis_time_once_per_refresh(redis_client: redis.Redis) -> None:
    clock = heartbeat.RedisClock(refresh_seconds=60)
    assert abs(clock.now(redis_client) - heartbeat.redis_now(redis_client)) < 0.05
    # Within the refresh no round trip: a Redis nobody listens on is never asked.
    gone = redis.Redis(port=support.free_port(), socket_connect_timeout=0.2)
    assert abs(clock.now(gone) - heartbeat.redis_now(redis_client)) < 0.05
    stale = heartbeat.RedisClock(refresh_seconds=0)
    stale.now(redis_client)
    with pytest.raises(redis.ConnectionError):
        stale.now(gone)
