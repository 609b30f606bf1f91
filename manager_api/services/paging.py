"""What the list endpoints share: a filtered page of rows, and how many children of each row are in which state."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

from peewee import Field, ModelSelect, fn


class Page(NamedTuple):
    """One page of rows, how many rows the filter matches in all, and each row's children counted by status."""

    total: int
    rows: list[Any]
    counts: dict[Any, dict[str, int]]


def matching(query: ModelSelect, status_field: Field, status: str | None, name_field: Field, name: str | None) -> Any:
    """``query`` narrowed to the rows in ``status`` and whose name contains ``name``, each when given."""
    if status:
        query = query.where(status_field == status)
    if name:
        query = query.where(name_field.contains(name))
    return query


def page_of(query: ModelSelect, page: int, size: int, *order: Any) -> tuple[int, list[Any]]:
    """The total number of rows ``query`` matches and the rows of page ``page`` (from 1) in ``order``."""
    return query.count(), list(query.order_by(*order).paginate(page, size))


def status_counts(parent: Field, status: Field, keys: Sequence[Hashable]) -> dict[Any, dict[str, int]]:
    """For each parent key, how many child rows (``parent`` is their foreign key) are in each ``status``."""
    counts: dict[Any, dict[str, int]] = {key: {} for key in keys}
    if counts:
        rows = (
            parent.model.select(parent, status, fn.COUNT(parent.model._meta.primary_key))
            .where(parent.in_(list(counts)))
            .group_by(parent, status)
            .tuples()
        )
        for key, state, count in rows:
            counts[key][state] = count
    return counts
