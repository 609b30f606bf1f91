"""Reusable scripts (issue 17): a named, versioned body or zip archive that fleet tasks run with parameters."""

from __future__ import annotations

from peewee import AutoField, BlobField, CharField, DateTimeField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow


class Script(BaseModel):
    """One immutable version of a script: (name, version) is written once and never changed, only deleted."""

    id = AutoField()  # peewee's implicit key, spelled out for type checkers
    name = CharField(max_length=100)
    version = CharField(max_length=64)
    interpreter = CharField(max_length=255)  # sh, bash, python3 or an absolute path
    kind = CharField(max_length=8)  # "body" (a single file) or "zip" (an archive run from ``entry``)
    entry = CharField(max_length=255, default="")  # the archive's file to run; "" for a body
    params = TextField(default="[]")  # JSON list of declared parameters (services.scripts.params)
    digest = CharField(max_length=64)  # sha256 hex of ``content``: the agents' cache key and integrity check
    size = IntegerField()
    content = BlobField()  # the body's UTF-8 bytes, or the zip as uploaded
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "scripts"
        indexes = ((("name", "version"), True),)
