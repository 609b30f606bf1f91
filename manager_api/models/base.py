"""What every model shares: the database proxy they are bound to and the clock their default times come from."""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import Model

from manager_api.db import database


def utcnow() -> datetime:
    """Now in UTC, naive, as the database stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database
