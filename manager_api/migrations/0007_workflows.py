"""Issue 17: workflows and their steps (models.Workflow, models.WorkflowStep); frozen copies of them here.

Numbered 0007: 0006 is the scripts' (another branch). Nothing here depends on it, and peewee's runner applies
each file it has not applied yet, in name order, so the two land in either order.
"""

from peewee import *


def up(migrator, db):
    class Workflow(Model):
        workflow_id = CharField(max_length=64, unique=True)
        name = CharField(max_length=255)
        status = CharField(max_length=16, default="pending", index=True)
        total_steps = IntegerField(default=0)
        scope = TextField(default="")
        created_by = CharField(max_length=255, default="")
        created_at = DateTimeField(index=True)
        updated_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        canceled_by = CharField(max_length=255, null=True)
        canceled_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "workflows"

    class WorkflowStep(Model):
        workflow = ForeignKeyField(Workflow, backref="steps", on_delete="CASCADE", index=True)
        position = IntegerField()
        name = CharField(max_length=64)
        spec = TextField()
        sealed = TextField(default="")
        depends_on = TextField(default="[]")
        on_failed_dependency = CharField(max_length=16, default="stop")
        status = CharField(max_length=16, default="pending", index=True)
        task_id = CharField(max_length=64, null=True, index=True)
        reason = TextField(default="")
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "workflow_steps"
            indexes = ((("workflow", "name"), True),)

    db.create_tables([Workflow, WorkflowStep])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS workflow_steps")
    db.execute_sql("DROP TABLE IF EXISTS workflows")
