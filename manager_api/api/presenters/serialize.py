"""Small conversions the presenters share: times as the public JSON writes them (services.serialize.iso), a list
endpoint's page."""

from __future__ import annotations

from typing import Any

from manager_api.services.serialize import iso

__all__ = ["iso", "page_json"]  # iso lives in services.serialize (node documents use it too)


def page_json(key: str, items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    """A list endpoint's answer: the items under ``key`` with ``total``, ``page`` and ``page_size``."""
    return {key: items, "total": total, "page": page, "page_size": page_size}
