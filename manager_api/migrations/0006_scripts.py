"""Issue 17: the scripts table (models.Script, a frozen copy of it here) and the script a fleet task runs.

fleet_tasks.script is JSON of the script reference a task runs ({name, version, digest, ...}), "" for a plain
command: a DEFAULT in the schema, so ALTER TABLE ADD COLUMN fills the rows there are without SQLite copying
the table.
"""

from peewee import *


def up(migrator, db):
    class Script(Model):
        id = AutoField()
        name = CharField(max_length=100)
        version = CharField(max_length=64)
        interpreter = CharField(max_length=255)
        kind = CharField(max_length=8)
        entry = CharField(max_length=255, default="")
        params = TextField(default="[]")
        digest = CharField(max_length=64)
        size = IntegerField()
        content = BlobField()
        created_by = CharField(max_length=255, default="")
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "scripts"
            indexes = ((("name", "version"), True),)

    db.create_tables([Script])
    migrator.migrate(
        migrator.add_column(
            "fleet_tasks", "script", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("fleet_tasks", "script"))
    db.execute_sql("DROP TABLE IF EXISTS scripts")
