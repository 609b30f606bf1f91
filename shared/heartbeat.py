"""Heartbeats: agents write them, the manager reads them; both through these two functions.

The time of a heartbeat is taken from Redis's own clock inside a Lua script, and the manager compares it
with Redis's clock too, so a skewed clock on an agent or on the manager never marks a node offline.

A node writes only its own keys (keys.node_heartbeat, keys.node_summary: its Redis user reaches no other
node's). Its summary (what liveness and the node list read, every node in one MGET) also carries the node's
own estimate of Redis's time when it wrote it, signed with its key (shared.job_signing), so that a summary
is believed only from its node even where agents share one Redis user (an operator's --agent-redis-url).
Given ``key_of``, the manager believes a summary only when its node signed it, and dates it by the signed
time, so a replayed old one goes stale.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import compress, repeat
from typing import Any, NamedTuple, cast

from redis import Redis

from . import job_signing, keys

KeyOf = Callable[[str], bytes]
"""The signing key of a node id (the manager derives it: manager_api.services.job_keys.node_key)."""

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
    "taking_jobs",
    "agent_schedules_version",
)
"""Fields of the keys.node_heartbeat hash; ``ts`` is written by the script, the rest by the agent."""

# KEYS: the node's heartbeat hash and summary. ARGV: interval, cpu%, memory%, the node's time, its signature,
# whether its worker takes jobs (1 or 0), then name/value pairs of every figure.
_WRITE = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
redis.call('HSET', KEYS[1], 'ts', now, unpack(ARGV, 7))
redis.call('SET', KEYS[2], table.concat({now, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, ' '))
return now
"""


def _number(value: Any, default: float = 0.0) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return repr(default)


def _signed_text(node_id: str, at: str, interval: str, cpu: str, memory: str, taking: str) -> str:
    return f"{node_id} {at} {interval} {cpu} {memory} {taking}"


def write(
    redis: Redis, node_id: str, figures: Mapping[str, Any], key: bytes | None = None, clock_offset: float = 0.0
) -> float:
    """Record a heartbeat of ``node_id`` with its figures, its summary signed with the node's ``key``;
    returns the Redis time it was stamped with.

    ``clock_offset`` is Redis's clock minus this host's, as the previous write showed it (stamp - time).
    """
    interval = _number(figures.get("interval"), 5.0)
    cpu = _number(figures.get("cpu_usage_percent"))
    memory = _number(figures.get("memory_usage_percent"))
    at = repr(time.time() + clock_offset)
    taking = "0" if figures.get("taking_jobs") is False else "1"
    signature = "-"
    if key is not None:
        text = _signed_text(node_id, at, interval, cpu, memory, taking)
        signature = job_signing.sign_message(key, keys.node_summary(node_id), text)
    argv: list[Any] = [interval, cpu, memory, at, signature, taking]
    for name, value in figures.items():
        if name == "ts" or name not in FIELDS:
            continue
        argv += [name, "" if value is None else str(value)]
    stamped = redis.eval(_WRITE, 2, keys.node_heartbeat(node_id), keys.node_summary(node_id), *argv)
    return float(cast("str | bytes", stamped))  # redis-py types a sync reply as "Awaitable | Any"


Grace = tuple[float, float]
"""(paused_at, resumed_at): Redis times between which nobody judged liveness (keys.LIVENESS_GRACE)."""


class Summary(NamedTuple):
    """What the node list, placement and offline detection need from a node's last heartbeat."""

    ts: float
    interval: float
    cpu_usage_percent: float
    memory_usage_percent: float
    grace: Grace | None = None
    """Set by the readers while a grace is in force: the liveness rule (online_until) gives it room."""
    taking_jobs: bool = True
    """Whether the node's worker takes jobs (False while it waits to reconnect to Redis): an online node that
    does not is not ready, and placement puts nothing on it."""

    def online_until(self, offline_after_intervals: int) -> float:
        """The Redis time after which this heartbeat no longer keeps its node online: the one liveness rule.

        A heartbeat is good for ``offline_after_intervals`` of its intervals. When judging paused (every
        manager down, Redis unreachable) and resumed, a node that was online when it paused gets one full
        window from the resume, as Nomad resets every heartbeat timer after a leader election: its heartbeat
        is old only because nobody was there to receive the next ones.
        """
        window = offline_after_intervals * self.interval
        until = self.ts + window
        if self.grace is not None and until >= self.grace[0]:
            return max(until, self.grace[1] + window)
        return until

    def online(self, now: float, offline_after_intervals: int) -> bool:
        """Whether this heartbeat, seen at Redis time ``now``, keeps the node online."""
        return now <= self.online_until(offline_after_intervals)


def parse_summary(raw: bytes | str, node_id: str = "", key_of: KeyOf | None = None) -> Summary | None:
    """One keys.node_summary value as a Summary, or None when this version cannot read it; given ``key_of``, also
    None unless ``node_id`` signed it, and dated by the node's signed time rather than the stamp."""
    if key_of is None:
        return _parse(raw)[0]
    key = key_of(node_id)
    cached = _verified.get(node_id)
    if cached is not None and cached[0] == raw and cached[1] == key:
        return cached[2]
    summary = _parse_signed(raw, node_id, key)
    _verified[node_id] = (raw, key, summary)
    return summary


_verified: dict[str, tuple[bytes | str, bytes, Summary | None]] = {}
"""node id -> (raw summary, key, what it parsed to). A summary changes once per interval but is read every
second (liveness) and by every node query, and its signature costs three times the rest of a read."""


def _parse(raw: bytes | str) -> tuple[Summary | None, list[str]]:
    parts = (raw.decode() if isinstance(raw, bytes) else raw).split()
    if len(parts) < 4:
        return None, parts
    try:
        ts, interval, cpu, memory = map(float, parts[:4])
    except ValueError:
        return None, parts
    taking = len(parts) < 7 or parts[6] != "0"
    return Summary(ts, interval, cpu, memory, taking_jobs=taking), parts


def _parse_signed(raw: bytes | str, node_id: str, key: bytes) -> Summary | None:
    summary, parts = _parse(raw)
    if summary is None or len(parts) != 7:
        return None
    _stamp, interval, cpu, memory, at, signature, taking = parts
    signed = _signed_text(node_id, at, interval, cpu, memory, taking)
    if not job_signing.verify_message(key, signature, keys.node_summary(node_id), signed):
        return None
    try:
        return summary._replace(ts=float(at))
    except ValueError:  # signed, but not a time: a node may only break its own summary
        return None


class _SummaryKeys(dict[str, str]):
    """node id -> keys.node_summary of it, made at its first read."""

    def __missing__(self, node_id: str) -> str:
        key = self[node_id] = keys.node_summary(node_id)
        return key


# Naming 10,000 summary keys (two Python calls each) was a tenth of a read of every node's summary: each process
# keeps each node's key, one entry per node id ever read, as _verified does.
_summary_keys = _SummaryKeys()


def read_raw_summaries(redis: Redis, node_ids: Iterable[str]) -> tuple[float, dict[str, bytes], Grace | None]:
    """Redis's time, the summary as stored of each of ``node_ids`` that has one (node id -> b"ts interval cpu
    memory at signature taking") and the liveness grace in force if any (give it to each parsed Summary), in one
    round trip: one MGET of the nodes the caller knows (the database's), 10,000 in a few milliseconds."""
    ids = list(node_ids)
    now, values, grace = read_raw_values(redis, ids)
    return now, stored_by_node(ids, values), grace


def stored_by_node(node_ids: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """node id -> its summary as stored, of those of ``node_ids`` whose value (read_raw_values) is not None."""
    present = list(map(operator.is_not, values, repeat(None)))
    stored = cast("Sequence[bytes]", values)  # those compress keeps are not None
    return dict(zip(compress(node_ids, present), compress(stored, present), strict=True))  # in C: 10,000 a read


def read_raw_values(redis: Redis, node_ids: Sequence[str]) -> tuple[float, list[bytes | None], Grace | None]:
    """read_raw_summaries by position: each of ``node_ids``'s summary as stored or None, in their order."""
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    pipe.get(keys.LIVENESS_GRACE)
    pipe.get(keys.LIVENESS_JUDGED)
    if node_ids:
        pipe.mget(list(map(_summary_keys.__getitem__, node_ids)))
    replies = pipe.execute()
    (sec, usec), grace, judged = replies[0], replies[1], replies[2]
    values = replies[3] if node_ids else []
    now = sec + usec / 1_000_000
    return now, values, grace_in_force(now, parse_grace(grace), judged)


JUDGING_STALE_SECONDS = 3.0
"""Liveness last judged longer ago than this (three ticks of the duties) means judging is paused right now."""


def grace_in_force(now: float, grace: Grace | None, judged: bytes | str | None) -> Grace | None:
    """The grace readers apply: the one the duties granted, or, while nobody judges (Redis just came back and
    the duties have not taken their lock again, or every manager's duties are down), the grace they will
    grant when they resume, as of now. A node online when judging paused so stays online meanwhile, as
    Nomad's nodes stay ready while there is no leader, instead of reading offline for a moment."""
    try:
        last = float(judged) if judged is not None else None
    except ValueError:
        last = None
    if last is None or now - last <= JUDGING_STALE_SECONDS:
        return grace
    return last, now  # a grace still kept from an earlier pause ended before ``last``: this one decides


def parse_grace(raw: bytes | str | None) -> Grace | None:
    """A keys.LIVENESS_GRACE value as (paused_at, resumed_at), or None."""
    if raw is None:
        return None
    try:
        paused_at, resumed_at = map(float, (raw.decode() if isinstance(raw, bytes) else raw).split())
    except ValueError:
        return None
    return paused_at, resumed_at


def read_summaries(
    redis: Redis, node_ids: Iterable[str], key_of: KeyOf | None = None
) -> tuple[float, dict[str, Summary]]:
    """Redis's time and the parsed heartbeat summary of each of ``node_ids``, with the grace in force (a node
    never heard from is absent; given ``key_of``, so is one whose summary its node did not sign)."""
    now, raw, grace = read_raw_summaries(redis, node_ids)
    out = {}
    for node_id, value in raw.items():
        summary = parse_summary(value, node_id, key_of)
        if summary is not None:
            out[node_id] = summary if grace is None else summary._replace(grace=grace)
    return now, out


# KEYS: LIVENESS_JUDGED, LIVENESS_GRACE; ARGV: the grace's lifetime in ms (0: none to give).
_RESUME = """
local t = redis.call('TIME')
local now = string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
local last = redis.call('GET', KEYS[1])
if last and tonumber(ARGV[1]) > 0 then
  -- A grace still in force is for a pause just before this one (the manager resumed judging when it
  -- restarted Redis, the duties now): one grace from the earlier pause, or its nodes would lose theirs.
  local from = last
  local kept = redis.call('GET', KEYS[2])
  local paused = kept and string.match(kept, '^(%S+)')
  if paused and tonumber(paused) and tonumber(paused) < tonumber(last) then
    from = paused
  end
  redis.call('SET', KEYS[2], from .. ' ' .. now, 'PX', ARGV[1])
end
redis.call('SET', KEYS[1], now)
return last
"""

_JUDGED = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], string.format('%d.%06d', tonumber(t[1]), tonumber(t[2])))
"""


def mark_judged(redis: Redis) -> None:
    """Record that liveness was judged now (the duties, every tick)."""
    redis.eval(_JUDGED, 1, keys.LIVENESS_JUDGED)


def resume_judging(redis: Redis, node_ids: Iterable[str], offline_after_intervals: int) -> Grace | None:
    """Take up judging liveness (the duties, on taking their lock): grant the nodes (``node_ids``, those the
    database knows) that were online when it was last judged one full window from now (Summary.online_until).
    Returns the grace, or None when there was no previous judge or no node."""
    _now, raw, _grace = read_raw_summaries(redis, node_ids)
    windows = [s.interval * offline_after_intervals for s in (_parse(v)[0] for v in raw.values()) if s is not None]
    # Expires once the longest window after the resume is over: from then on it changes nothing.
    ttl_ms = int((max(windows, default=0.0) + 5.0) * 1000) if windows else 0
    last = redis.eval(_RESUME, 2, keys.LIVENESS_JUDGED, keys.LIVENESS_GRACE, str(ttl_ms))
    if last is None or not ttl_ms:
        return None
    return parse_grace(cast("bytes | None", redis.get(keys.LIVENESS_GRACE)))


def redis_now(redis: Redis) -> float:
    """Redis's clock, in unix seconds."""
    sec, usec = cast(tuple[int, int], redis.time())
    return sec + usec / 1_000_000


CLOCK_REFRESH_SECONDS = 10.0
"""How long a RedisClock trusts the offset it measured before it asks Redis's TIME again."""


class RedisClock:
    """Redis's clock without a round trip each time: this host's clock plus the offset to Redis's, measured with
    TIME at most every CLOCK_REFRESH_SECONDS.

    Deadlines travel on Redis's clock because hosts' clocks may disagree; stamping each job with a TIME round trip
    cost a real-time call two of them (the manager's dispatch, the agent's check). A host clock stepped between two
    measures is off until the next one, seconds at most: deadlines are whole task timeouts.
    """

    def __init__(self, refresh_seconds: float = CLOCK_REFRESH_SECONDS) -> None:
        self.refresh_seconds = refresh_seconds
        self._offset = 0.0
        self._measured: float | None = None  # monotonic time of the last measure

    def now(self, redis: Redis) -> float:
        """Redis's clock now, in unix seconds (measured anew when the offset is older than refresh_seconds)."""
        measured = self._measured
        if measured is None or time.monotonic() - measured > self.refresh_seconds:
            before = time.time()
            remote = redis_now(redis)
            self._offset = remote - (before + time.time()) / 2
            self._measured = time.monotonic()
        return time.time() + self._offset


def read(redis: Redis, node_ids: Iterable[str]) -> tuple[float, dict[str, dict[str, str]]]:
    """Redis's time and the last heartbeat of each node (an empty dict for a node never heard from)."""
    ids = list(node_ids)
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    for node_id in ids:
        pipe.hmget(keys.node_heartbeat(node_id), list(FIELDS))
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
    """Whether a heartbeat hash (``read``) seen at Redis time ``now`` keeps its node online, by the one rule
    (Summary.online_until)."""
    try:
        summary = Summary(float(beat["ts"]), float(beat.get("interval") or 5.0), 0.0, 0.0)
    except (KeyError, ValueError):
        return False
    return summary.online(now, offline_after_intervals)
