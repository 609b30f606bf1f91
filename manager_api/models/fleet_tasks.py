"""Fleet tasks (document 004): one command run on many nodes, and each node's part of it."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from manager_api.models.base import BaseModel, utcnow
from manager_api.models.nodes import Node
from shared.states import FleetTaskStatus, HostRunStatus


class FleetTask(BaseModel):
    """A fleet task (document 004): one command run on many nodes; counters mirror its hosts."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    task_id = CharField(max_length=64, unique=True)  # uuid4, the public id
    name = CharField(max_length=255)
    description = TextField(default="")
    command = TextField()
    parameters = TextField(default="")
    timeout = IntegerField()  # seconds per node
    targets = TextField(default="[]")  # JSON list, as posted; resolved to hosts at start
    env = TextField(default="{}")  # JSON {str: str}
    secret_env = TextField(default="")  # services.secret_store: a Fernet token of JSON {str: str}, or ""
    processor = TextField(default="")  # services.processors: its URL and secret sealed by secret_store, or ""
    processor_open = BooleanField(default=False, index=True)  # deliveries still to be made (the outbox's look)
    script = TextField(default="")  # JSON of the script run (services.scripts.running), "" for a plain command
    status = CharField(max_length=16, default=FleetTaskStatus.PENDING.value, index=True)
    total_hosts = IntegerField(default=0)
    completed_hosts = IntegerField(default=0)  # hosts that ended, whatever the outcome
    failed_hosts = IntegerField(default=0)  # hosts that ended without succeeding
    created_by = CharField(max_length=255, default="")
    started_by = CharField(max_length=255, null=True)
    canceled_by = CharField(max_length=255, null=True)
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True, index=True)  # retention prunes on it
    canceled_at = DateTimeField(null=True)

    class Meta:
        table_name = "fleet_tasks"


class TaskHost(BaseModel):
    """One node's part of a fleet task; node is null when the target matched no node."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    task = ForeignKeyField(FleetTask, backref="hosts", on_delete="CASCADE", index=True)
    task_id: int  # the key column peewee reads without a join
    node = ForeignKeyField(Node, backref="task_hosts", null=True, on_delete="SET NULL")
    node_id: str | None  # the key column peewee reads without a join
    target = CharField(max_length=255)  # the target item that selected this node (or matched nothing)
    hostname = CharField(max_length=255, default="")  # as the node was at start: kept if the node goes
    ip = CharField(max_length=64, default="")
    status = CharField(max_length=16, default=HostRunStatus.PENDING.value, index=True)
    stdout = TextField(default="")
    stderr = TextField(default="")
    stdout_truncated = BooleanField(default=False)
    stderr_truncated = BooleanField(default=False)
    exit_code = IntegerField(null=True)
    pid = IntegerField(null=True)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    error_message = TextField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "task_hosts"
        # A node runs a task once; reports look hosts up by (task, node).
        indexes = ((("task", "node"), True),)
