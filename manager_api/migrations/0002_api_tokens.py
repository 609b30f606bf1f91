"""Issue 15: the api_tokens table of named, role-carrying API tokens (models.ApiToken); a frozen copy of it here."""

from peewee import *


def up(migrator, db):
    class ApiToken(Model):
        id = CharField(primary_key=True, max_length=32)
        name = CharField(unique=True, max_length=64)
        role = CharField(max_length=16)
        node_query = TextField(null=True)
        commands = TextField(null=True)
        secret_hash = CharField(max_length=64)
        created_at = DateTimeField()
        created_by = CharField(default="")
        expires_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)
        last_used_at = DateTimeField(null=True)
        rate_limit = CharField(max_length=64, null=True)

        class Meta:
            database = db
            table_name = "api_tokens"

    db.create_tables([ApiToken])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS api_tokens")
