"""The nodes: one row per agent, its sampled CPU and memory use, and the revision counter of node rows."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow
from shared.states import NodeStatus


class Node(BaseModel):
    """A machine running an agent; id is the agent's own node_id."""

    id = CharField(primary_key=True, max_length=64)
    hostname = CharField(max_length=255, index=True)
    ip = CharField(max_length=64, index=True)
    facts = TextField(default="{}")  # JSON
    # JSON {str: str}, the effective labels: the agent's (facts["labels"] at join) overridden key by key by
    # api_labels; fleet task targets "key=value" and business affinity match these.
    labels = TextField(default="{}")
    api_labels = TextField(default="{}")  # JSON {str: str}, set by PUT /api/nodes/{id}/labels; a join keeps them
    # JSON [str], set by PUT /api/nodes/{id}/tags; null until then (the agent's tags apply). A join keeps them.
    api_tags = TextField(null=True)
    interval = FloatField(default=5.0)
    version = CharField(max_length=64, default="")
    status = IntegerField(default=int(NodeStatus.OFFLINE))  # last persisted NodeStatus
    registered_at = DateTimeField(default=utcnow)
    last_seen = DateTimeField(null=True)
    # SHA-256 of the secret the agent presented at its first join; a join under this id must present it again.
    secret_digest = CharField(max_length=64, null=True)
    # Set by DELETE /api/nodes/{id}, which forgets the node and its secret but keeps the row: deployment tasks
    # reference it (RESTRICT) and history shows its hostname. The node is forgotten while this is set and
    # secret_digest is null; the join that brings its agent back writes a digest (services/node_presence.py).
    forgotten_at = DateTimeField(null=True)

    class Meta:
        table_name = "node"


class NodeMetric(BaseModel):
    """A node's CPU and memory use, sampled from its heartbeat by the duties (services/nodes/metrics_history.py)
    every node_metrics_every_seconds and kept node_metrics_retention_hours: what the console's node chart and
    GET /api/nodes/{id}/metrics show."""

    id = AutoField()
    node = ForeignKeyField(Node, backref="metrics", on_delete="CASCADE")
    node_id: str  # the key column peewee reads without a join
    at = DateTimeField(index=True)
    cpu_percent = FloatField()
    memory_percent = FloatField()

    class Meta:
        table_name = "node_metrics"
        indexes = ((("node", "at"), False),)


class NodeRevision(BaseModel):
    """One row counting the changes to what a node's document is made of (the node table but for the duties'
    status and last_seen), bumped by database triggers (services/nodes/revision.py): readers keep the node rows
    while it is unchanged instead of reading 10,000 of them per node query."""

    id = IntegerField(primary_key=True)
    value = IntegerField(default=0)

    class Meta:
        table_name = "node_revision"
