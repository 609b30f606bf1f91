"""Businesses (document 001): their components, the components' usage history, the transitions of both, and
the tombstones of deleted business ids."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow
from manager_api.models.nodes import Node
from shared.states import BusinessState, ComponentState


class Business(BaseModel):
    """A business (document 001 §4.1): a set of components deployed and managed together."""

    business_id = CharField(primary_key=True, max_length=64)  # given by the user, or a uuid4 hex
    business_name = CharField(max_length=255)
    status = CharField(max_length=16, default=BusinessState.PENDING.value, index=True)
    spec = TextField()  # JSON of the accepted request (as validated): what restart and update start from
    message = TextField(null=True)  # why it failed, when it did
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "businesses"


class BusinessComponent(BaseModel):
    """One component of a business (document 001 §4.2), placed on one node; its current state and usage.

    ``generation`` grows each time the component is replaced (restart, changed by an update): reports of
    an older generation are ignored. ``desired`` is what the manager wants of it: "running", "stopped",
    or "removed" (an update dropped it; the row goes once its node reports it stopped).
    """

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    business = ForeignKeyField(Business, backref="components", on_delete="CASCADE", index=True)
    business_id: str  # the key column peewee reads without a join
    component_id = CharField(max_length=64)
    component_name = CharField(max_length=255)
    type = CharField(max_length=16)
    image_url = TextField(null=True)
    image_name = CharField(max_length=255, null=True)
    command = TextField(default="")
    args = TextField(default="[]")  # JSON list
    working_dir = TextField(null=True)
    resource_requirements = TextField(default="{}")  # JSON, as requested
    environment_variables = TextField(default="{}")  # JSON
    secret_environment_variables = TextField(default="")  # services.secret_store token, or ""
    config_files = TextField(default="[]")  # JSON list of {path, content}
    affinity = TextField(default="{}")  # JSON {require_gpu, node_labels}
    cpu_cores = FloatField(default=0.0)  # reserved on its node; placement sums these
    memory_mb = IntegerField(default=0)
    gpus = IntegerField(default=0)
    node = ForeignKeyField(Node, backref="components", null=True, on_delete="SET NULL")
    node_id: str | None  # the key column peewee reads without a join
    generation = IntegerField(default=1)
    desired = CharField(max_length=16, default="running")
    status = CharField(max_length=16, default=ComponentState.PENDING.value, index=True)
    container_id = CharField(max_length=128, null=True)
    pid = IntegerField(null=True)
    exit_code = IntegerField(null=True)
    error_message = TextField(null=True)
    cpu_percent = FloatField(null=True)  # last reported usage
    memory_used_mb = FloatField(null=True)
    gpu_percent = FloatField(null=True)
    usage_at = DateTimeField(null=True)
    started_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "business_components"
        indexes = (
            (("business", "component_id"), True),
            # Placement sums active reservations per node on every placement: covering, so that sum
            # reads this index alone, already in node order (no table look-ups, no temporary B-tree).
            (("node", "status", "desired", "cpu_cores", "memory_mb", "gpus"), False),
        )


class ComponentMetric(BaseModel):
    """A bounded history of a component's resource usage (document 001 §4.3); pruned by retention."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    component = ForeignKeyField(BusinessComponent, backref="metrics", on_delete="CASCADE")
    component_id: int  # the key column peewee reads without a join
    timestamp = DateTimeField(index=True)
    cpu_percent = FloatField()
    memory_mb = FloatField()
    gpu_percent = FloatField(null=True)

    class Meta:
        table_name = "component_metrics"
        indexes = ((("component", "timestamp"), False),)


class BusinessHistory(BaseModel):
    """Every transition of a business or of one of its components, with its time and reason."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    business = ForeignKeyField(Business, backref="history", on_delete="CASCADE", index=True)
    business_id: str  # the key column peewee reads without a join
    component_id = CharField(max_length=64, null=True)  # null: the business itself
    generation = IntegerField(null=True)
    from_status = CharField(max_length=16, null=True)
    to_status = CharField(max_length=16)
    reason = TextField(null=True)
    actor = CharField(max_length=255, default="")
    at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "business_events"


class BusinessTombstone(BaseModel):
    """A deleted business id and the highest generation its components reached.

    Agents keep the record of an ended generation for a day and take a deploy of a generation they hold
    for a redelivery (a no-op): a business deployed again under this id starts above it.
    """

    business_id = CharField(primary_key=True, max_length=64)
    generation = IntegerField()
    deleted_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "business_tombstones"
