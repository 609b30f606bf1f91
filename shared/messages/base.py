"""What every wire schema shares: the NUL-free Text field, the base that ignores unknown fields, and the one
cached instance of each schema (schema_of, dump)."""

from __future__ import annotations

import functools
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

NO_NUL_PATTERN = r"^[^\x00]*$"
"""A Text field's pattern in the OpenAPI document: any string without a NUL (ECMA-262 and Python alike)."""
NUL_REFUSED = "contains a NUL byte"
"""What a field answers to a NUL byte (names, labels, hostnames, commands: see Text)."""


def no_nul(value: str) -> None:
    """Validator: refuse a string holding a NUL byte."""
    if "\x00" in value:
        raise ValidationError(NUL_REFUSED)


class Text(fields.String):
    """A string without NUL bytes: the type of every name, label, hostname and command of the API.

    A NUL cannot cross into argv, the environment, a path or a hostname (C strings end at it), and a tool
    reading the database would cut the text there; so it is refused at the door, naming the field.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # First, so that the NUL is what a field reports even when another rule fails on it too.
        self.validators.insert(0, no_nul)
        # The OpenAPI document says so (apispec copies a field's metadata), unless a pattern of the field's
        # own (a Regexp, or one in its metadata) already keeps the NUL out: JSON Schema has one pattern.
        if "pattern" not in self.metadata and not any(isinstance(v, validate.Regexp) for v in self.validators):
            self.metadata = {**self.metadata, "pattern": NO_NUL_PATTERN}


class WireSchema(Schema):
    class Meta:
        # Newer peers may add fields; an older peer ignores them instead of failing.
        unknown = EXCLUDE


@functools.cache
def schema_of(schema: type[Schema]) -> Schema:
    """The one instance of ``schema`` this process uses. Making a schema costs more than loading a small
    message (a 100-instance app's dispatch made 200 of them); marshmallow 4 keeps no per-call state in the
    instance, so threads share it."""
    return schema()


def dump(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    """Validate an outgoing message with ``schema`` and return it ready for JSON."""
    instance = schema_of(schema)
    return instance.dump(instance.load(data))
