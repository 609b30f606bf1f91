"""When to try again the stops of components that could not be stopped (engine down, process not ours to signal)."""

from __future__ import annotations

import math
import time

STOP_RETRY_FIRST_SECONDS = 1.0
STOP_RETRY_MAX_SECONDS = 30.0
"""A stop that failed is tried again after 1 s, then twice as long each time up to 30 s, until it succeeds: the
component keeps reading stopping, with the reason."""


class StopRetries:
    """The planned attempts, by record key: (due, delay, grace). Not thread-safe: the manager's lock guards it."""

    def __init__(self) -> None:
        self._planned: dict[str, tuple[float, float, float]] = {}

    def __bool__(self) -> bool:
        return bool(self._planned)

    def plan(self, key: str, grace: float) -> float:
        """Plan the next attempt to stop ``key``; returns the delay (growing with each failure)."""
        _due, last, _grace = self._planned.get(key, (0.0, 0.0, grace))
        delay = min(STOP_RETRY_MAX_SECONDS, last * 2) if last else STOP_RETRY_FIRST_SECONDS
        self._planned[key] = (time.monotonic() + delay, delay, grace)
        return delay

    def due(self, now: float) -> list[tuple[str, float]]:
        """The keys whose attempt is due, with their grace; not due again until planned anew or done."""
        found = []
        for key, (at, delay, grace) in list(self._planned.items()):
            if at <= now:
                self._planned[key] = (math.inf, delay, grace)  # not due again while this attempt runs
                found.append((key, grace))
        return found

    def done(self, key: str) -> None:
        """``key`` stopped, or no longer needs stopping."""
        self._planned.pop(key, None)
