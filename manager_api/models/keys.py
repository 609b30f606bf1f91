"""The secrets every manager host shares through the database."""

from __future__ import annotations

from peewee import CharField, TextField

from manager_api.models.base import BaseModel


class ManagerKey(BaseModel):
    """Secrets every manager host shares through the database (several hosts on one PostgreSQL)."""

    name = CharField(primary_key=True, max_length=64)
    value = TextField()

    class Meta:
        table_name = "manager_key"
