"""What the answer schemas share: strict fields (a JSON type is checked, never converted), the paging fields,
and the small answers several routes give."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from marshmallow import RAISE, Schema, fields, validate


class Answer(Schema):
    """An answer object: every field the presenter writes is declared, so an undeclared one fails validation
    (and the document says ``additionalProperties: false``: clients see exactly what is sent)."""

    class Meta:
        unknown = RAISE


# marshmallow's own fields convert on load ("1" to 1, 1 to True): validating an answer must refuse what the
# document's types would refuse, so these take their JSON type as it is.


class Int(fields.Integer):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class Number(fields.Float):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return value


class Bool(fields.Boolean):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def text(*, nullable: bool = False, **kwargs: Any) -> fields.String:
    """A required string field (null allowed when ``nullable``)."""
    return fields.String(required=True, allow_none=nullable, **kwargs)


def integer(*, nullable: bool = False, **kwargs: Any) -> Int:
    return Int(required=True, allow_none=nullable, **kwargs)


def number(*, nullable: bool = False, **kwargs: Any) -> Number:
    return Number(required=True, allow_none=nullable, **kwargs)


def boolean(**kwargs: Any) -> Bool:
    return Bool(required=True, **kwargs)


def time(*, nullable: bool = False, **kwargs: Any) -> fields.DateTime:
    """An ISO-8601 UTC time written with a Z (services.serialize.iso)."""
    return fields.DateTime(required=True, allow_none=nullable, **kwargs)


def one_of(values: Iterable[Any], *, nullable: bool = False, **kwargs: Any) -> fields.Field:
    """A string (or integer) from a closed set: an Enum's values, or the literals given."""
    choices = [v.value if isinstance(v, Enum) else v for v in values]
    field: type[fields.Field] = Int if all(isinstance(c, int) for c in choices) else fields.String
    return field(required=True, allow_none=nullable, validate=validate.OneOf(choices), **kwargs)


def strings(**kwargs: Any) -> fields.List:
    return fields.List(fields.String(), required=True, **kwargs)


def string_map(**kwargs: Any) -> fields.Dict:
    """An object of string values (labels)."""
    return fields.Dict(keys=fields.String(), values=fields.String(), required=True, **kwargs)


def counts(**kwargs: Any) -> fields.Dict:
    """An object of counts by state."""
    return fields.Dict(keys=fields.String(), values=Int(), required=True, **kwargs)


def any_object(*, nullable: bool = False, **kwargs: Any) -> fields.Dict:
    """A JSON object whose keys are not a fixed set (a definition as posted, an audit entry's detail)."""
    return fields.Dict(keys=fields.String(), required=True, allow_none=nullable, **kwargs)


def nested(schema: type[Schema], *, nullable: bool = False, **kwargs: Any) -> fields.Nested:
    return fields.Nested(schema, required=True, allow_none=nullable, **kwargs)


def many(schema: type[Schema], **kwargs: Any) -> fields.List:
    return fields.List(fields.Nested(schema), required=True, **kwargs)


class PageAnswer(Answer):
    """What every list endpoint adds to its items (presenters.serialize.page_json)."""

    total = integer(metadata={"description": "Items matching, over every page."})
    page = integer()
    page_size = integer()


class SuccessAnswer(Answer):
    """``{"status": "success"}``: a template was stored (manual §5.3.2)."""

    status = one_of(["success"])


class IdAnswer(Answer):
    """``{"id": ...}``: a deployment started or asked to stop (manual §5.3.3)."""

    id = text()
