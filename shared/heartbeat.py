"""Heartbeats: agents write them, the manager reads them; both through these two functions.

The time of a heartbeat is taken from Redis's own clock inside a Lua script, and the manager compares it
with Redis's clock too, so a skewed clock on an agent or on the manager never marks a node offline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from redis import Redis

from . import keys

FIELDS = (
    "ts",
    "interval",
    "hostname",
    "ip",
    "cpu_usage_percent",
    "memory_usage_percent",
    "disk_usage_percent",
    "load1",
    "load5",
    "load15",
    "net_bytes_sent",
    "net_bytes_recv",
    "cpu_count",
    "memory_total_mb",
    "tasks_running",
)
"""Fields of the keys.node_heartbeat hash; ``ts`` is written by the script, the rest by the agent."""

_WRITE = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
redis.call('HSET', KEYS[1], 'ts', now, unpack(ARGV, 2))
redis.call('ZADD', KEYS[2], now, ARGV[1])
return now
"""


def write(redis: Redis, node_id: str, figures: Mapping[str, Any]) -> float:
    """Record a heartbeat of ``node_id`` with its figures; returns the Redis time it was stamped with."""
    argv: list[Any] = [node_id]
    for name, value in figures.items():
        if name == "ts" or name not in FIELDS:
            continue
        argv += [name, "" if value is None else str(value)]
    stamped = redis.eval(_WRITE, 2, keys.node_heartbeat(node_id), keys.NODES_SEEN, *argv)
    return float(stamped)


def redis_now(redis: Redis) -> float:
    """Redis's clock, in unix seconds."""
    sec, usec = redis.time()
    return sec + usec / 1_000_000


def read(redis: Redis, node_ids: Iterable[str]) -> tuple[float, dict[str, dict[str, str]]]:
    """Redis's time and the last heartbeat of each node (an empty dict for a node never heard from)."""
    ids = list(node_ids)
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    for node_id in ids:
        pipe.hmget(keys.node_heartbeat(node_id), FIELDS)
    replies = pipe.execute()
    sec, usec = replies[0]
    out: dict[str, dict[str, str]] = {}
    for node_id, values in zip(ids, replies[1:], strict=True):
        out[node_id] = {
            name: (v.decode() if isinstance(v, bytes) else v)
            for name, v in zip(FIELDS, values, strict=True)
            if v is not None
        }
    return sec + usec / 1_000_000, out


def is_online(beat: Mapping[str, str], now: float, offline_after_intervals: int) -> bool:
    """Whether a heartbeat read at Redis time ``now`` is fresh enough for the node to count as online."""
    try:
        ts = float(beat["ts"])
        interval = float(beat.get("interval") or 5.0)
    except (KeyError, ValueError):
        return False
    return now - ts <= offline_after_intervals * interval
