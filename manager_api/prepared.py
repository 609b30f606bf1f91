"""Statements of the hot paths whose SQL text peewee builds once per process, then run with each call's values.

Peewee builds a statement's text from its query objects on every execution: for the short queries of a real-time
call (a task by its id, its hosts, its status) that building cost 5 to 20 times the query itself (a task read by
``get_or_none``: about 1 ms of CPU, 0.08 ms through here). A statement here is named by its caller with the shape
of its values (how many names in an IN list); the first run of a name builds the query and checks that its values
are the ones given, in their order, so a wrong name or order fails at once instead of reading other rows.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from peewee import Model, Query

from manager_api.db import database

M = TypeVar("M", bound=Model)

_texts: dict[tuple[type, Hashable], str] = {}
"""(database class, statement name) -> its SQL text."""


def execute(name: Hashable, values: Sequence[Any], build: Callable[[], Query]) -> Any:
    """Run the statement ``name`` with ``values`` (a cursor); ``build()`` makes its query the first time."""
    key = (type(database.obj), name)
    text = _texts.get(key)
    if text is None:
        text, params = build().sql()
        if list(params) != list(values):
            raise ValueError(f"statement {name!r}: its query binds {params!r}, the caller gave {values!r}")
        _texts[key] = text
    return database.execute_sql(text, values)


def rows(name: Hashable, values: Sequence[Any], build: Callable[[], Query]) -> list[tuple[Any, ...]]:
    """The rows of the statement ``name`` as tuples, its values as the database driver returns them."""
    return list(execute(name, values, build).fetchall())


def models(model: type[M], name: Hashable, values: Sequence[Any], build: Callable[[], Query]) -> list[M]:
    """The rows of ``name`` as ``model`` instances, as peewee makes them; ``build()`` selects every field of
    ``model`` (``model.select()...``), in its order."""
    cursor = execute(name, values, build)
    fields = model._meta.sorted_fields  # type: ignore[attr-defined]
    if [column[0] for column in cursor.description] != [field.column_name for field in fields]:
        raise ValueError(f"statement {name!r} does not select every field of {model.__name__} in order")
    out = []
    for row in cursor.fetchall():
        instance = model(__no_default__=1, **{f.name: f.python_value(v) for f, v in zip(fields, row, strict=True)})
        instance._dirty.clear()  # as read: nothing to save
        out.append(instance)
    return out
