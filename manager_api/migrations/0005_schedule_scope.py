r"""The scope of the token that made a schedule (services.access.scope_of_current): JSON, "" for none.

Its firings are checked against it. A DEFAULT in the schema, so ALTER TABLE ADD COLUMN fills the existing rows
(all made before scoped tokens existed: "") without SQLite copying the table.
"""

from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column(
            "schedules", "scope", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("schedules", "scope"))
