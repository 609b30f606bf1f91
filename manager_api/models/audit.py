"""The audit log: who did what, when."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, TextField

from manager_api.models.base import BaseModel, utcnow


class AuditLog(BaseModel):
    """Who did what, when: deploys, stops, joins, node transitions."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    at = DateTimeField(default=utcnow, index=True)
    actor = CharField(max_length=255)
    action = CharField(max_length=64)
    target = CharField(max_length=255)
    detail = TextField(default="{}")  # JSON

    class Meta:
        table_name = "audit_log"
