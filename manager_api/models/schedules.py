"""Scheduled fleet tasks: the definitions the cron runner is rebuilt from."""

from __future__ import annotations

from peewee import BooleanField, CharField, DateTimeField, IntegerField, TextField

from manager_api.models.base import BaseModel, utcnow


class Schedule(BaseModel):
    """A scheduled fleet task: the definition is the truth the cron runner is rebuilt from at every start."""

    id = CharField(primary_key=True, max_length=64)  # uuid4 hex, the public id
    name = CharField(max_length=255, unique=True)
    description = TextField(default="")
    command = TextField()  # a script's is "script:<name>@<version>", as its tasks' (what an allowlist matches)
    script = TextField(default="")  # a registered script as "<name>@<version>", or "" for a command
    params = TextField(default="{}")  # JSON: the script's plain parameter values as given (their JSON types)
    secret_params = TextField(default="")  # services.secret_store: a Fernet token of its secret values, or ""
    targets = TextField(default="[]")  # JSON list, resolved at each firing
    timeout = IntegerField()
    env = TextField(default="{}")  # JSON {str: str}
    secret_env = TextField(default="")  # services.secret_store: a Fernet token of JSON {str: str}, or ""
    processor = TextField(default="")  # handed to each task it fires (services.processors), sealed
    scope = TextField(default="")  # the creating token's scope (services.access.scope_of_current), "" for none
    cron = CharField(max_length=255, null=True)  # a crontab line (UTC), or null with interval set
    interval = IntegerField(null=True)  # seconds, or null with cron set
    paused = BooleanField(default=False)
    on_agent = BooleanField(default=False)  # fired by the target nodes' agents from their own clocks (agent_sets)
    version = IntegerField(default=1)  # bumped on every change of the definition: the cron runner re-syncs on it
    created_by = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    next_run_at = DateTimeField(null=True)  # written by the cron runner (and at create/resume); null when paused
    last_run_at = DateTimeField(null=True)
    last_task_id = CharField(max_length=64, null=True)

    class Meta:
        table_name = "schedules"


class AgentScheduleClock(BaseModel):
    """One row: the version of the agents' schedule sets, bumped by every change of an on_agent schedule.

    Every node's set is sent with it, and an agent applies only a set newer than the one it holds: sets sent
    out of order (a change, then a join, each a queued job) never take a node back.
    """

    version = IntegerField(default=0)

    class Meta:
        table_name = "agent_schedule_clock"
