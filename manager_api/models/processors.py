"""A task's processor deliveries: each node's result and the task's summary, POSTed to the task's webhook."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow
from manager_api.models.fleet_tasks import FleetTask


class ProcessorDelivery(BaseModel):
    """One body for a task's processor (services.processors): made once, sent until 2xx or given up."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    task = ForeignKeyField(FleetTask, backref="deliveries", on_delete="CASCADE")
    task_id: int  # the key column peewee reads without a join
    about = CharField(max_length=64)  # the node id of a host's result, "summary" for the task's
    delivery_id = CharField(max_length=64, unique=True)  # the body's "id" and X-Corral-Delivery, every attempt
    event = CharField(max_length=32)  # task.host, task.summary
    body = TextField()  # the exact JSON sent (and signed) at every attempt
    state = CharField(max_length=16, default="pending", index=True)  # pending, sent, given_up
    attempts = IntegerField(default=0)
    next_at = DateTimeField(default=utcnow)
    last_error = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    sent_at = DateTimeField(null=True)

    class Meta:
        table_name = "processor_deliveries"
        # One of each per task: the outbox is filled from the hosts' rows again and again, idempotently.
        indexes = ((("task", "about"), True),)
