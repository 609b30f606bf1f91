"""A fast path for loading the plainest messages: the same result as the schema's load, for a fraction of its time.

The duties load every report an agent sends with its marshmallow schema: an `echo hi` on 10,000 nodes is 20,000
command reports, and marshmallow's load of one (14 fields) costs about 100 us, two seconds of the duties' CPU
for one task. Most fields of the hot messages are a plain string, number or boolean, sent by a peer that wrote
them with the same schema. ``fast_loader`` builds, for a schema whose every field is that plain, a loader that
accepts only the obvious input (a dict, each value of exactly its field's JSON type, every rule of the field
checked) and answers what ``schema.load`` answers; anything else, however slightly unusual (a number as a string,
a missing required field, a NaN, a value out of its choices), makes it answer None so that the caller loads with
the schema, which stays the contract: it accepts the same inputs and raises the same errors as before.
``tests/shared/test_fast_load.py`` checks the equivalence on valid and malformed messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields, missing, validate

from .base import Text, no_nul

FastLoad = Callable[[Any], dict[str, Any] | None]
"""A message as read from JSON -> what the schema's load gives, or None: load it with the schema."""

_Check = Callable[[Any], Any]
"""One field's value -> its loaded value; raises _Unusual when the schema must decide."""


class _Unusual(Exception):
    """A value the fast path does not decide on: the schema loads the message."""


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise _Unusual
    return value


def _float(value: Any) -> Any:
    kind = type(value)
    if kind is int:
        try:
            value = float(value)
        except OverflowError:
            raise _Unusual from None
    elif kind is not float:
        raise _Unusual
    if not math.isfinite(value):
        raise _Unusual
    return value


def _integer(value: Any) -> Any:
    if type(value) is not int:
        raise _Unusual
    return value


def _boolean(value: Any) -> Any:
    if type(value) is not bool:
        raise _Unusual
    return value


_TYPES: dict[type[fields.Field], _Check] = {
    fields.String: _string,
    Text: _string,  # its NUL rule is one of its validators (below)
    fields.Float: _float,
    fields.Integer: _integer,
    fields.Boolean: _boolean,
}
"""The field classes (exactly these, not their subclasses) the fast path knows, and the JSON type each takes."""


def _rule(validator: Any) -> Callable[[Any], bool] | None:
    """A validator the fast path checks itself, as a predicate; None when it does not know it."""
    if isinstance(validator, validate.OneOf):
        choices = frozenset(validator.choices)
        return choices.__contains__
    if validator is no_nul:
        return lambda value: "\x00" not in value
    return None


def _to_the_schema(value: Any) -> Any:
    raise _Unusual


def _field_check(field: fields.Field) -> _Check | None:
    """The fast check of one field, or None when the field is not plain enough."""
    if type(field) is fields.Nested and field.allow_none and not field.required and field.load_default is None:
        # Absent or null (the common case: a command report of no agent-side firing) is plain; anything else is
        # left to the schema, which loads the nested message.
        if field.data_key is None and field.attribute is None and not field.dump_only and not field.validators:
            return _to_the_schema
        return None
    base = _TYPES.get(type(field))
    if base is None or field.data_key is not None or field.attribute is not None or field.dump_only:
        return None
    if isinstance(field, fields.Float) and field.allow_nan:
        return None
    rules = [_rule(v) for v in field.validators]
    if any(r is None for r in rules):
        return None
    if not rules:
        return base
    checks = [r for r in rules if r is not None]

    def checked(value: Any) -> Any:
        value = base(value)
        for ok in checks:
            if not ok(value):
                raise _Unusual
        return value

    return checked


def fast_loader(schema: Schema) -> FastLoad | None:
    """The fast load of ``schema``'s messages, or None when a field or hook of the schema is not plain."""
    if any(schema._hooks.values()) or schema.many or schema.partial or schema.only or schema.exclude:
        return None
    plan: list[tuple[str, _Check, bool, bool, Any]] = []
    for name, field in schema.load_fields.items():
        check = _field_check(field)
        if check is None:
            return None
        plan.append((name, check, field.required, field.allow_none, field.load_default))
    known = frozenset(name for name, *_ in plan)

    def load(data: Any) -> dict[str, Any] | None:
        if type(data) is not dict:
            return None
        result: dict[str, Any] = {}
        try:
            for name, check, required, allow_none, default in plan:
                if name in data:
                    value = data[name]
                    if value is None:
                        if not allow_none:
                            return None
                        result[name] = None
                    else:
                        result[name] = check(value)
                elif required:
                    return None
                elif default is not missing:
                    result[name] = default() if callable(default) else default
        except _Unusual:
            return None
        # Unknown fields are left out, as the schemas' EXCLUDE does; any other setting is the schema's to apply.
        if schema.unknown != "exclude" and not known.issuperset(data):
            return None
        return result

    return load
