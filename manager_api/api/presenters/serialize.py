"""Small conversions the presenters share: times as the public JSON writes them, a list endpoint's page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def page_json(key: str, items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    """A list endpoint's answer: the items under ``key`` with ``total``, ``page`` and ``page_size``."""
    return {key: items, "total": total, "page": page, "page_size": page_size}
