"""Webhook notifications waiting for, or done with, delivery."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow


class Alert(BaseModel):
    """A webhook notification waiting for, or done with, delivery (services.alerts): recorded with the change."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    event_id = CharField(max_length=64, unique=True)  # the body's "id" and X-Corral-Delivery, the same every try
    event = CharField(max_length=64)
    body = TextField()  # the exact JSON sent (and signed) at every attempt
    created_at = DateTimeField(default=utcnow, index=True)
    state = CharField(max_length=16, default="pending", index=True)  # pending, sent, given_up
    attempts = IntegerField(default=0)
    next_at = DateTimeField(default=utcnow)
    acked = TextField(default="[]")  # JSON list of the URLs that answered 2xx: never sent to again
    last_error = TextField(default="")

    class Meta:
        table_name = "alerts"
