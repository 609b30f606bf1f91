"""Peewee models of the manager's database; no logic here."""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import (
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from shared.states import DeploymentState, NodeStatus, TaskState

from .db import database


def utcnow() -> datetime:
    """Now in UTC, naive, as the database stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(Model):
    class Meta:
        database = database


class Node(BaseModel):
    """A machine running an agent; id is the agent's own node_id."""

    id = CharField(primary_key=True, max_length=64)
    hostname = CharField(max_length=255, index=True)
    ip = CharField(max_length=64, index=True)
    facts = TextField(default="{}")  # JSON
    interval = FloatField(default=5.0)
    version = CharField(max_length=64, default="")
    status = IntegerField(default=int(NodeStatus.OFFLINE))  # last persisted NodeStatus
    registered_at = DateTimeField(default=utcnow)
    last_seen = DateTimeField(null=True)

    class Meta:
        table_name = "node"


class Template(BaseModel):
    """A business template: named task groups, stored exactly as posted."""

    name = CharField(max_length=255, unique=True)
    spec = TextField()  # JSON list of task groups, commands raw (with any host pin)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "template"


class Deployment(BaseModel):
    """One instance of a template that was deployed."""

    id = CharField(primary_key=True, max_length=64)
    template = ForeignKeyField(Template, backref="deployments", on_delete="RESTRICT")
    template_name = CharField(max_length=255)
    state = CharField(max_length=16, default=DeploymentState.PENDING.value, index=True)
    created_at = DateTimeField(default=utcnow)
    stopped_at = DateTimeField(null=True)
    created_by = CharField(max_length=255, default="")

    class Meta:
        table_name = "deployment"


class DeploymentTask(BaseModel):
    """One task of a deployment, placed on one node."""

    id = CharField(primary_key=True, max_length=64)
    deployment = ForeignKeyField(Deployment, backref="tasks", on_delete="CASCADE", index=True)
    group_index = IntegerField()
    task_index = IntegerField()
    name = CharField(max_length=255)
    command = TextField()  # without the host pin
    pin = CharField(max_length=255, null=True)
    node = ForeignKeyField(Node, backref="tasks", on_delete="RESTRICT")
    state = CharField(max_length=16, default=TaskState.PENDING.value)
    pid = IntegerField(null=True)
    exit_code = IntegerField(null=True)
    error = TextField(null=True)
    started_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "deployment_task"
        # Placement counts active tasks per node on every deploy.
        indexes = ((("node", "state"), False),)


class AuditLog(BaseModel):
    """Who did what, when: deploys, stops, joins, node transitions."""

    at = DateTimeField(default=utcnow, index=True)
    actor = CharField(max_length=255)
    action = CharField(max_length=64)
    target = CharField(max_length=255)
    detail = TextField(default="{}")  # JSON

    class Meta:
        table_name = "audit_log"


ALL_MODELS = [Node, Template, Deployment, DeploymentTask, AuditLog]
"""In creation order (foreign keys point backwards)."""
