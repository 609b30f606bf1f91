"""Times the agents report (unix seconds) as the database stores them."""

from __future__ import annotations

from datetime import UTC, datetime


def from_unix(ts: float | None) -> datetime | None:
    """A unix time as the naive UTC datetime the database stores."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
