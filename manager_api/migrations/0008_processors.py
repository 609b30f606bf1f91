r"""Issue 17: task processors (webhooks that receive each node's result and the task's summary).

fleet_tasks.processor and schedules.processor hold the processor sealed by services.secret_store ("" for none);
fleet_tasks.processor_open is true while the task's deliveries are still being made (the outbox looks only at
those). processor_deliveries is the outbox; a frozen copy of its model here. DEFAULTs in the schema, so ALTER
TABLE ADD COLUMN fills the existing rows without SQLite copying the tables.
"""

from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column(
            "fleet_tasks", "processor", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
        migrator.add_column(
            "fleet_tasks",
            "processor_open",
            BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")]),
            allow_not_null=True,
        ),
        migrator.add_index("fleet_tasks", ("processor_open",), False, name="fleet_tasks_processor_open"),
        migrator.add_column(
            "schedules", "processor", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
    )

    class FleetTask(Model):
        class Meta:
            database = db
            table_name = "fleet_tasks"

    class ProcessorDelivery(Model):
        task = ForeignKeyField(FleetTask, on_delete="CASCADE")
        about = CharField(max_length=64)
        delivery_id = CharField(max_length=64, unique=True)
        event = CharField(max_length=32)
        body = TextField()
        state = CharField(max_length=16, default="pending", index=True)
        attempts = IntegerField(default=0)
        next_at = DateTimeField()
        last_error = TextField(default="")
        created_at = DateTimeField()
        sent_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "processor_deliveries"
            indexes = ((("task", "about"), True),)

    db.create_tables([ProcessorDelivery])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS processor_deliveries")
    migrator.migrate(
        migrator.drop_index("fleet_tasks", "fleet_tasks_processor_open"),
        migrator.drop_column("fleet_tasks", "processor_open"),
        migrator.drop_column("fleet_tasks", "processor"),
        migrator.drop_column("schedules", "processor"),
    )
