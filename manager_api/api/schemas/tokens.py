"""Requests of the tokens API (issue 15): POST /api/tokens and the list's query."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from manager_api.api.rate_limits import parsed_rate
from manager_api.api.schemas.manual import PageQuerySchema, TrimmedString
from manager_api.services.access import ROLES

MAX_PATTERNS = 100
DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(fields.Field):
    """``30d``, ``12h``, ``90m``, ``45s``: how long a token lives."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:
        match = DURATION.match(value.strip()) if isinstance(value, str) else None
        if match is None or int(match.group(1)) == 0:
            raise ValidationError("a duration such as 30d, 12h, 90m or 45s")
        return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])


def _a_rate(value: str) -> None:
    """A rate in the syntax of --rate-limit (the limits package's), not ``off``: a token cannot escape the limit."""
    items = parsed_rate(value)
    if not items or any(item.amount < 1 for item in items):
        raise ValidationError("a rate such as 200/second or 1000 per minute")


class TokenSchema(Schema):
    """Body of POST /api/tokens."""

    class Meta:
        unknown = RAISE

    name = TrimmedString(required=True, validate=[validate.Length(min=1, max=64), validate.Regexp(r"^[\w.-]+$")])
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    nodeQuery = TrimmedString(load_default=None, allow_none=True, validate=validate.Length(min=1, max=2000))
    commands = fields.List(
        TrimmedString(validate=validate.Length(min=1, max=1000)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=MAX_PATTERNS),
    )
    expiresIn = Duration(load_default=None, allow_none=True)
    rateLimit = TrimmedString(load_default=None, allow_none=True, validate=[validate.Length(min=1, max=64), _a_rate])
    expiresAt = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=UTC)

    @post_load
    def _naive_utc(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        moment: datetime | None = data.get("expiresAt")
        if moment is not None:
            data["expiresAt"] = moment.astimezone(UTC).replace(tzinfo=None)
        return data


class TokenListQuerySchema(PageQuerySchema):
    """GET /api/tokens?page=&page_size=."""
