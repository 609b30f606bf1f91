r"""Secret env of apps (``secretEnvs``) and business components (``secret_environment_variables``): a Fernet
token of services.secret_store, "" when there is none; as 0003 did for fleet tasks and schedules.

A DEFAULT in the schema lets ALTER TABLE ADD COLUMN fill the rows there are without SQLite copying the table.
"""

from peewee import *


def _column():
    return TextField(default="", constraints=[SQL("DEFAULT ''")])


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("apps", "secret_envs", _column(), allow_not_null=True),
        migrator.add_column("business_components", "secret_environment_variables", _column(), allow_not_null=True),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("apps", "secret_envs"),
        migrator.drop_column("business_components", "secret_environment_variables"),
    )
