r"""Issue 17: agent-side schedules (fired by the target nodes' agents from their own clocks).

schedules.on_agent marks one (false for every existing row: a DEFAULT in the schema, so ALTER TABLE ADD COLUMN
fills them without SQLite copying the table); agent_schedule_clock holds the one version of the agents' sets,
bumped by every change of an on_agent schedule. A frozen copy of its model here.
"""

from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column(
            "schedules",
            "on_agent",
            BooleanField(default=False, constraints=[SQL("DEFAULT FALSE")]),
            allow_not_null=True,
        ),
    )

    class AgentScheduleClock(Model):
        version = IntegerField(default=0)

        class Meta:
            database = db
            table_name = "agent_schedule_clock"

    db.create_tables([AgentScheduleClock])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS agent_schedule_clock")
    migrator.migrate(migrator.drop_column("schedules", "on_agent"))
