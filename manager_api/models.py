"""Peewee models of the manager's database; no logic here."""

from __future__ import annotations

from datetime import UTC, datetime

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from manager_api.db import database
from shared.states import (
    BusinessState,
    ComponentState,
    DeploymentState,
    FleetTaskStatus,
    HostRunStatus,
    NodeStatus,
    TaskState,
)


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


class ManagerKey(BaseModel):
    """Secrets every manager host shares through the database (several hosts on one PostgreSQL)."""

    name = CharField(primary_key=True, max_length=64)
    value = TextField()

    class Meta:
        table_name = "manager_key"


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


class Schedule(BaseModel):
    """A scheduled fleet task: the definition is the truth the cron runner is rebuilt from at every start."""

    id = CharField(primary_key=True, max_length=64)  # uuid4 hex, the public id
    name = CharField(max_length=255, unique=True)
    description = TextField(default="")
    command = TextField()
    targets = TextField(default="[]")  # JSON list, resolved at each firing
    timeout = IntegerField()
    env = TextField(default="{}")  # JSON {str: str}
    secret_env = TextField(default="")  # services.secret_store: a Fernet token of JSON {str: str}, or ""
    scope = TextField(default="")  # the creating token's scope (services.access.scope_of_current), "" for none
    cron = CharField(max_length=255, null=True)  # a crontab line (UTC), or null with interval set
    interval = IntegerField(null=True)  # seconds, or null with cron set
    paused = BooleanField(default=False)
    version = IntegerField(default=1)  # bumped on every change of the definition: the cron runner re-syncs on it
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    next_run_at = DateTimeField(null=True)  # written by the cron runner (and at create/resume); null when paused
    last_run_at = DateTimeField(null=True)
    last_task_id = CharField(max_length=64, null=True)

    class Meta:
        table_name = "schedules"


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


class ApiToken(BaseModel):
    """A named API token with a role (issue 15): only the SHA-256 of its secret is kept (services/tokens.py).

    ``node_query`` (a node query, document 003 §5.1.2) and ``commands`` (JSON list of glob patterns) narrow an
    operator token; null means no limit. A revoked token keeps its row, so the audit log's names stay meaningful.
    """

    id = CharField(primary_key=True, max_length=32)  # the public id, part of the token text
    name = CharField(max_length=64, unique=True)
    role = CharField(max_length=16)
    node_query = TextField(null=True)
    commands = TextField(null=True)  # JSON list of glob patterns, or null: any command
    secret_hash = CharField(max_length=64)  # hex SHA-256 of the secret; never the secret itself
    created_at = DateTimeField(default=utcnow)
    created_by = CharField(max_length=255, default="")
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    last_used_at = DateTimeField(null=True)

    class Meta:
        table_name = "api_tokens"


ALL_MODELS = [
    Node,
    NodeMetric,
    NodeRevision,
    ManagerKey,
    Template,
    Deployment,
    DeploymentTask,
    AuditLog,
    FleetTask,
    TaskHost,
    Schedule,
    Business,
    BusinessComponent,
    ComponentMetric,
    BusinessHistory,
    BusinessTombstone,
    App,
    AppInstance,
    AppRestart,
    Alert,
    ApiToken,
]
"""In creation order (foreign keys point backwards)."""
