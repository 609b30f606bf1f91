"""The manual's deployments: templates, the deployments made from them, and their tasks placed on nodes."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow
from manager_api.models.nodes import Node
from shared.states import DeploymentState, TaskState


class Template(BaseModel):
    """A business template: named task groups, stored exactly as posted."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    name = CharField(max_length=255, unique=True)
    spec = TextField()  # JSON list of task groups, commands raw (with any host pin)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "template"


class Deployment(BaseModel):
    """One instance of a template that was deployed."""

    id = CharField(primary_key=True, max_length=64)
    template = ForeignKeyField(Template, backref="deployments", on_delete="RESTRICT")
    template_id: int  # the key column peewee reads without a join
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
    deployment_id: str  # the key column peewee reads without a join
    group_index = IntegerField()
    task_index = IntegerField()
    name = CharField(max_length=255)
    command = TextField()  # without the host pin
    pin = CharField(max_length=255, null=True)
    node = ForeignKeyField(Node, backref="tasks", on_delete="RESTRICT")
    node_id: str  # the key column peewee reads without a join
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
