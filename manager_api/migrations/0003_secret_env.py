r"""Secret env of fleet tasks and schedules (services.secret_store): a Fernet token, "" when there is none.

The column comes with a DEFAULT in the schema, so ALTER TABLE ADD COLUMN fills the rows there are without
SQLite copying the table. 0002 is another change's (api tokens); peewee's runner applies the files it finds
in name order and records each name, so a database may hold 0001 and 0003 alone and take 0002 later.
"""

from peewee import *


def _column():
    return TextField(default="", constraints=[SQL("DEFAULT ''")])


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("fleet_tasks", "secret_env", _column(), allow_not_null=True),
        migrator.add_column("schedules", "secret_env", _column(), allow_not_null=True),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("fleet_tasks", "secret_env"),
        migrator.drop_column("schedules", "secret_env"),
    )
