r"""Issue 17: a schedule may run a registered script instead of a command.

schedules.script names it ("<name>@<version>", "" for a command), schedules.params holds its plain parameter values
(JSON) and schedules.secret_params its secret ones sealed by services.secret_store ("" for none). DEFAULTs in the
schema, so ALTER TABLE ADD COLUMN fills the existing rows without SQLite copying the table.
"""

from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column(
            "schedules", "script", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
        migrator.add_column(
            "schedules", "params", TextField(default="{}", constraints=[SQL("DEFAULT '{}'")]), allow_not_null=True
        ),
        migrator.add_column(
            "schedules", "secret_params", TextField(default="", constraints=[SQL("DEFAULT ''")]), allow_not_null=True
        ),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("schedules", "secret_params"),
        migrator.drop_column("schedules", "params"),
        migrator.drop_column("schedules", "script"),
    )
