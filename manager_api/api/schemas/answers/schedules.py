"""Answers of the schedules API (presenters.schedules)."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import (
    Answer,
    PageAnswer,
    boolean,
    integer,
    many,
    nested,
    strings,
    text,
    time,
)
from manager_api.api.schemas.answers.fleet_tasks import ProcessorAnswer


class ScheduleAnswer(Answer):
    """A schedule; its environment's names only (values may be secrets)."""

    id = text()
    name = text()
    description = text()
    command = text(metadata={"description": 'A script\'s reads "script:<name>@<version>".'})
    script = text(nullable=True, metadata={"description": "The registered script it runs (name@version), or null."})
    params = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": 'The script\'s parameter values; a secret one with "(secret)": never its value.'},
    )
    targets = strings()
    timeout = integer()
    env_keys = strings()
    secretEnv = fields.Dict(  # noqa: N815 - the API's spelling
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": 'Names of the secret env, each with "(secret)": a value is never answered.'},
    )
    processor = nested(ProcessorAnswer, nullable=True)
    cron = text(nullable=True, metadata={"description": "A crontab line (UTC); null when interval is set."})
    interval = integer(nullable=True, metadata={"description": "Seconds; null when cron is set."})
    paused = boolean()
    on_agent = boolean(metadata={"description": "Fired by its target nodes' agents from their own clocks."})
    next_run_at = time(nullable=True)
    last_run_at = time(nullable=True)
    last_task_id = text(nullable=True)
    created_by = text()
    created_at = time()
    updated_at = time()


class AgentHeldAnswer(Answer):
    """What one target node of an on_agent schedule holds."""

    node_id = text()
    hostname = text()
    version = integer(nullable=True, metadata={"description": "Its set's version, from its last heartbeat."})
    current = boolean(metadata={"description": "Whether it holds the latest set (agent_set_version)."})


class ScheduleDetailAnswer(ScheduleAnswer):
    recent_task_ids = strings(metadata={"description": "The fleet tasks it fired last, newest first."})
    agent_set_version = integer(
        nullable=True,
        metadata={"description": "The version of the sets last sent to agents; null unless on_agent."},
    )
    agents = many(AgentHeldAnswer, metadata={"description": "Each node an on_agent schedule goes to; [] otherwise."})


class SchedulePageAnswer(PageAnswer):
    schedules = many(ScheduleAnswer)


class ScheduleDeletedAnswer(Answer):
    id = text()
    deleted = boolean()
