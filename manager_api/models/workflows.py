"""Workflows (issue 17): fleet tasks run in the order their dependencies give, as one tracked whole."""

from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow


class Workflow(BaseModel):
    """A workflow: named steps, each a fleet task body; its status is derived from its steps (services.workflows)."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    workflow_id = CharField(max_length=64, unique=True)  # uuid4, the public id
    name = CharField(max_length=255)
    status = CharField(max_length=16, default="pending", index=True)  # shared.states.WorkflowStatus
    total_steps = IntegerField(default=0)
    scope = TextField(default="")  # the creating token's scope (services.access.scope_of_current), "" for none
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    canceled_by = CharField(max_length=255, null=True)
    canceled_at = DateTimeField(null=True)

    class Meta:
        table_name = "workflows"


class WorkflowStep(BaseModel):
    """One step of a workflow: a fleet task started once every step it depends on has ended."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    workflow = ForeignKeyField(Workflow, backref="steps", on_delete="CASCADE", index=True)
    workflow_id: int  # the key column peewee reads without a join
    position = IntegerField()  # its index in the posted steps list: the order answers show
    name = CharField(max_length=64)  # unique within its workflow, identifier-like
    spec = TextField()  # JSON: the fleet task body (POST /api/tasks'), as validated, without its SEALED_PARTS
    sealed = TextField(default="")  # services.secret_store token of {part: JSON text} of the body's SEALED_PARTS
    depends_on = TextField(default="[]")  # JSON list of step names
    on_failed_dependency = CharField(max_length=16, default="stop")  # "stop" or "continue"
    status = CharField(max_length=16, default="pending", index=True)  # shared.states.WorkflowStepStatus
    task_id = CharField(max_length=64, null=True, index=True)  # the fleet task's public id, once started
    reason = TextField(default="")  # why it was skipped, canceled or failed without a task
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "workflow_steps"
        indexes = ((("workflow", "name"), True),)
