"""Long-running apps (document 003 §5.2): their definitions, their instances on nodes, and their restarts."""

from __future__ import annotations

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from manager_api.models.base import BaseModel, utcnow
from manager_api.models.nodes import Node


class App(BaseModel):
    """A long-running app (document 003 §5.2): its definition, how many instances it should run, and where.

    ``version`` grows whenever the definition changes (PUT with a different definition) or a restart is asked:
    instances of an older version are replaced one at a time (services.apps.reconcile). ``settled`` is False
    while the duties have work on it (short, over, lost or old instances): their tick looks only at those.
    """

    name = CharField(primary_key=True, max_length=64)
    spec = TextField()  # JSON of the accepted definition (camelCase, every default filled)
    secret_envs = TextField(default="")  # services.secret_store: the secretEnvs (never in spec), or ""
    version = IntegerField(default=1)
    desired = CharField(max_length=16, default="running")  # "running" or "stopped" (no instances, kept)
    settled = BooleanField(default=False, index=True)
    shortfall = TextField(default="")  # JSON {"missing": n, "reasons": [...]} when the count cannot be met
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "apps"


class AppInstance(BaseModel):
    """One instance (one supervised process) of an app on one node, as its agent last reported it.

    ``desired`` is "run" while the manager wants it, "stop" once it sent STOP_INSTANCE (scaled down,
    replaced, moved, lost and replaced): such a row goes when its node reports it stopped.
    """

    id = CharField(primary_key=True, max_length=64)  # the instance id, "<app>-<8 hex>" or 32 hex
    app = ForeignKeyField(App, backref="instance_rows", on_delete="CASCADE", index=True)
    app_id: str  # the key column peewee reads without a join
    version = IntegerField()
    node = ForeignKeyField(Node, backref="app_instances", null=True, on_delete="SET NULL")
    node_id: str | None  # the key column peewee reads without a join
    hostname = CharField(max_length=255, default="")
    cpus = FloatField(default=0.0)  # reserved on its node (resAlloc); placement sums these
    mem_mb = IntegerField(default=0)
    desired = CharField(max_length=8, default="run", index=True)
    state = CharField(max_length=16, default="pending", index=True)
    health = CharField(max_length=16, default="unknown")
    pid = IntegerField(null=True)
    ports = TextField(default="[]")  # JSON list, as assigned by the agent
    restarts = IntegerField(default=0)
    exit_code = IntegerField(null=True)
    signal = IntegerField(null=True)
    reason = TextField(null=True)
    last_check = TextField(null=True)  # JSON HealthResultSchema
    limits = TextField(null=True)
    placed_because = TextField(default="")  # why it exists and why on its node (services/apps/reconcile.place)
    started_at = DateTimeField(null=True)
    lost_at = DateTimeField(null=True)
    sent_at = DateTimeField(default=utcnow)  # of its last RUN_INSTANCE (sent again while unanswered)
    reported_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "app_instances"


class AppRestart(BaseModel):
    """One automatic restart of an app instance by its agent (InstanceReportSchema.restart)."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    instance = ForeignKeyField(AppInstance, backref="restart_rows", on_delete="CASCADE", index=True)
    instance_id: str  # the key column peewee reads without a join
    at = DateTimeField()
    reason = TextField()
    exit_code = IntegerField(null=True)
    signal = IntegerField(null=True)
    oom = BooleanField(default=False)

    class Meta:
        table_name = "app_restarts"
        indexes = ((("instance", "at"), True),)
