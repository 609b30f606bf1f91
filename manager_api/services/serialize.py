"""Times: the agents' unix seconds as the database stores them, and datetimes as the public JSON writes them."""

from __future__ import annotations

from datetime import UTC, datetime


def from_unix(ts: float | None) -> datetime | None:
    """A unix time as the naive UTC datetime the database stores."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
