"""Final reports sent but not yet acknowledged by the manager: kept, checked, and sent again until they are.

See shared.acks for why. A report is sent again at once when Redis restarted since it was sent (the
server's run_id changed: what it held in memory may be gone), else RESEND_FIRST_SECONDS after it was sent,
then twice as long each time up to RESEND_MAX_SECONDS (a manager that is down or behind is not flooded).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from shared import acks, keys

logger = logging.getLogger(__name__)

CHECK_SECONDS = 0.5
"""How often the node's acked set is read while reports wait for their acknowledgment."""

RESEND_FIRST_SECONDS = 5.0
"""A report not acknowledged this long after it was sent is sent again (the manager applies one in ~0.1 s)."""

RESEND_MAX_SECONDS = 60.0
"""Longest wait between two sendings of one report."""


@dataclass
class _Waiting:
    report: dict[str, Any]
    run_id: str | None  # of the Redis it was sent to, when known
    resend_at: float  # monotonic
    wait: float  # seconds until the next sending after this one


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PendingAcks:
    """The final reports of one kind (shared.acks) of one node that wait for the manager's acknowledgment."""

    def __init__(self, node_id: str, kind: str) -> None:
        self.node_id = node_id
        self.kind = kind
        self._waiting: dict[str, _Waiting] = {}  # report name -> its wait
        self._run_id: str | None = None  # of the Redis last seen
        self._next_check = 0.0

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, name: str) -> bool:
        return name in self._waiting

    def sent(self, name: str, report: dict[str, Any]) -> None:
        """``report`` named ``name`` went out (again): wait for its acknowledgment."""
        waiting = self._waiting.get(name)
        wait = RESEND_FIRST_SECONDS if waiting is None else min(waiting.wait * 2, RESEND_MAX_SECONDS)
        first = time.monotonic() + CHECK_SECONDS
        # With nothing waiting before, the last check's time is stale: reading the set right after the report
        # went out only cost a round trip (the manager acknowledges in about 0.1 s).
        self._next_check = first if not self._waiting else min(self._next_check, first)
        self._waiting[name] = _Waiting(report, self._run_id, time.monotonic() + wait, wait)

    def forget(self, name: str) -> None:
        """Stop waiting for ``name`` (a newer report superseded it)."""
        self._waiting.pop(name, None)

    def reports(self) -> list[dict[str, Any]]:
        """Every report still waiting (to keep on disk when the agent stops)."""
        return [waiting.report for waiting in self._waiting.values()]

    def check_due(self) -> bool:
        """Whether reports wait and it is time to read the acked set again."""
        return bool(self._waiting) and time.monotonic() >= self._next_check

    def check(self, redis: Redis) -> tuple[list[str], list[dict[str, Any]]]:
        """Read and empty this kind's acked set; returns (names acknowledged, reports to send again now).

        Raises RedisError when Redis fails (the caller retries later). Members of this kind that name no
        waiting report (a report sent twice, acknowledged twice) are removed too.
        """
        self._next_check = time.monotonic() + CHECK_SECONDS
        key = keys.node_acked(self.node_id)
        pipe = redis.pipeline(transaction=False)
        pipe.smembers(key)
        pipe.info("server")
        members, info = cast(tuple[set[Any], dict[str, Any]], tuple(pipe.execute()))
        prefix = acks.member(self.kind, "")
        mine = [_text(m) for m in members if _text(m).startswith(prefix)]
        acked = [m[len(prefix) :] for m in mine if m[len(prefix) :] in self._waiting]
        for name in acked:
            del self._waiting[name]
        if mine:
            redis.srem(key, *mine)  # after the acknowledged ones are forgotten: a crash here only re-sends
        run_id = str(info.get("run_id") or "") or None
        restarted = run_id is not None and self._run_id is not None and run_id != self._run_id
        self._run_id = run_id
        now = time.monotonic()
        again = [
            name
            for name, waiting in self._waiting.items()
            if restarted or now >= waiting.resend_at or (run_id is not None and waiting.run_id not in (None, run_id))
        ]
        for name in again:
            # Not again until it went out again (sent() then sets the next time): Redis may still be down.
            self._waiting[name].resend_at = float("inf")
            self._waiting[name].run_id = None
        if again:
            why = "Redis restarted" if restarted else "no acknowledgment yet"
            logger.warning(
                "node %s: sending %d %s reports again (%s): %s",
                self.node_id,
                len(again),
                self.kind,
                why,
                ", ".join(again[:5]) + (" ..." if len(again) > 5 else ""),
            )
        return acked, [self._waiting[name].report for name in again]
