"""Named API tokens with a role (issue 15)."""

from __future__ import annotations

from peewee import CharField, DateTimeField, TextField

from manager_api.models.base import BaseModel, utcnow


class ApiToken(BaseModel):
    """A named API token with a role (issue 15): only the SHA-256 of its secret is kept (services/tokens.py).

    ``node_query`` (a node query, document 003 §5.1.2) and ``commands`` (JSON list of glob patterns) narrow an
    operator token; null means no limit. A revoked token keeps its row, so the audit log's names stay meaningful.
    """

    id = CharField(primary_key=True, max_length=32)  # the public id, part of the token text
    name = CharField(max_length=64, unique=True)
    role = CharField(max_length=16)
    node_query = TextField(null=True)
    commands = TextField(null=True)  # JSON list of glob patterns, or null: any command
    secret_hash = CharField(max_length=64)  # hex SHA-256 of the secret; never the secret itself
    created_at = DateTimeField(default=utcnow)
    created_by = CharField(max_length=255, default="")
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)
    last_used_at = DateTimeField(null=True)
    rate_limit = CharField(max_length=64, null=True)  # its own API rate (limits' syntax); null: --rate-limit's

    class Meta:
        table_name = "api_tokens"
