"""Answers of the apps API: an app as services.apps.reads shows it (the create, update, scale, restart, stop and
start answers too), its instances, the list, the deletion, an instance's log lines (presenters.apps)."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import (
    Answer,
    Int,
    PageAnswer,
    any_object,
    boolean,
    integer,
    many,
    nested,
    number,
    one_of,
    strings,
    text,
    time,
)
from manager_api.services.apps.state import RUN, RUNNING, STOP, STOPPED
from shared.states import AppHealth, AppInstanceState


class AppCountsAnswer(Answer):
    """Instances by what they do; ``stopping`` counts those being stopped (not wanted any more)."""

    planned = integer()
    placed = integer()
    running = integer()
    healthy = integer()
    unhealthy = integer()
    lost = integer()
    stopping = integer()


class AppRolloutAnswer(Answer):
    """A rolling update's progress."""

    in_progress = boolean()
    version = integer()
    updated = integer(metadata={"description": "Instances of this version that are ready."})
    old = integer(metadata={"description": "Instances of an older version still wanted."})
    total = integer()


class ShortfallAnswer(Answer):
    """Why the app has fewer instances than asked."""

    missing = integer()
    reasons = strings()


class HealthResultAnswer(Answer):
    """The last result of an instance's health checks (shared.messages.HealthResultSchema)."""

    at = number(metadata={"description": "Unix time on the agent."})
    ok = boolean()
    answer = text()
    consecutive_failures = integer()


class AppRestartAnswer(Answer):
    at = time()
    reason = text()
    exit_code = integer(nullable=True)
    signal = integer(nullable=True)
    oom = boolean()


class AppInstanceAnswer(Answer):
    id = text()
    version = integer()
    node_id = text(nullable=True)
    hostname = text()
    desired = one_of([RUN, STOP], metadata={"description": "stop: being stopped (scaled down, replaced...)."})
    state = one_of(AppInstanceState)
    health = one_of(AppHealth)
    pid = integer(nullable=True)
    ports = fields.List(Int(), required=True)
    restart_count = integer()
    exit_code = integer(nullable=True)
    signal = integer(nullable=True)
    reason = text(nullable=True)
    last_check = nested(HealthResultAnswer, nullable=True)
    limits = text(nullable=True, metadata={"description": "Whether its resource limits are enforced, and how."})
    placed_because = text()
    started_at = time(nullable=True)
    lost_at = time(nullable=True)
    reported_at = time(nullable=True)
    created_at = time()
    restarts = many(AppRestartAnswer, metadata={"description": "The most recent, newest first."})


class AppSummaryAnswer(Answer):
    """An app as GET /api/apps lists it."""

    name = text()
    status = one_of([RUNNING, STOPPED])
    version = integer()
    definition = any_object(metadata={"description": "The definition as accepted, every default filled."})
    secretEnvs = fields.Dict(  # noqa: N815 - the API's spelling
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": 'Names of the secret env, each with "(secret)": a value is never answered.'},
    )
    counts = nested(AppCountsAnswer)
    deployment = nested(AppRolloutAnswer)
    settled = boolean()
    shortfall = nested(ShortfallAnswer, nullable=True)
    created_by = text()
    created_at = time()
    updated_at = time()


class AppAnswer(AppSummaryAnswer):
    """An app with every instance (those being stopped too)."""

    instances = many(AppInstanceAnswer)


class AppPageAnswer(PageAnswer):
    apps = many(AppSummaryAnswer)


class AppDeletedAnswer(Answer):
    name = text()
    deleted = boolean()
    stopped_instances = strings()


class LogLineAnswer(Answer):
    id = text(metadata={"description": "Its Redis stream id."})
    stream = text()
    line = text()


class AppLogsAnswer(Answer):
    app = text()
    instance_id = text()
    lines = many(LogLineAnswer, metadata={"description": "Oldest first."})
