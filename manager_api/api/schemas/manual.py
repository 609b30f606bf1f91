"""Marshmallow schemas of the public API (manual §5.3): strict, trimmed, bounded."""

from __future__ import annotations

from datetime import UTC
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from manager_api.services.deployments.host_pins import split_pin
from manager_api.services.webhooks import check_url
from shared.defaults import TASK_TIMEOUT, TASK_TIMEOUT_MAX
from shared.messages import Text
from shared.states import DeploymentState, FleetTaskStatus

MAX_NAME = 255
MAX_COMMAND = 8192
MAX_GROUPS = 100
MAX_TASKS_PER_GROUP = 100
MAX_ID = 64


class TrimmedString(Text):
    """A string with surrounding whitespace removed before validation (and, as every Text, no NUL byte)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class _Strict(Schema):
    class Meta:
        unknown = RAISE


def _bounded(max_length: int) -> list[validate.Validator]:
    return [validate.Length(min=1, error="Must not be empty."), validate.Length(max=max_length)]


def _name() -> TrimmedString:
    return TrimmedString(required=True, validate=_bounded(MAX_NAME))


class TaskConfigSchema(_Strict):
    """``config`` of a template's task: the command line, optionally the host it is pinned to."""

    command = TrimmedString(required=True, validate=_bounded(MAX_COMMAND))
    # What /api/task/query shows back; accepted so a queried template can be posted again.
    host = TrimmedString(validate=_bounded(MAX_NAME))

    @validates_schema
    def _one_pin(self, data: dict[str, Any], **kwargs: Any) -> None:
        host = data.get("host")
        pin, _ = split_pin(data.get("command", ""))
        if host and pin and pin != host:
            raise ValidationError(f"command is pinned to '{pin}' but host says '{host}'", "host")


class TaskSchema(_Strict):
    """One task of a task group (each deployment of the template runs it as a deployment task)."""

    name = _name()
    config = fields.Nested(TaskConfigSchema, required=True)


class TaskGroupSchema(_Strict):
    """Tasks that run together on one node."""

    tasks = fields.List(
        fields.Nested(TaskSchema), required=True, validate=validate.Length(min=1, max=MAX_TASKS_PER_GROUP)
    )


class TemplateSchema(_Strict):
    """Body of POST /api/task/task_group."""

    name = _name()
    task_groups = fields.List(
        fields.Nested(TaskGroupSchema), required=True, validate=validate.Length(min=1, max=MAX_GROUPS)
    )


class NameSchema(_Strict):
    """Body naming a template: POST /api/task/query and /api/task/task_group/deploy."""

    name = _name()


class IdSchema(_Strict):
    """Body naming a deployment: POST /api/task/task_group/query and /stop."""

    id = TrimmedString(required=True, validate=_bounded(MAX_ID))


DEFAULT_PAGE_SIZE = 20
"""What a list endpoint answers when no page size is given (unless it answered more before it paged)."""

MAX_PAGE_SIZE = 1000
"""The most items a list endpoint answers at once."""

MAX_PAGE = 1_000_000_000
"""The highest page number: far past any list, and low enough that the row offset, (page - 1) x page_size, stays
within SQLite's 64-bit integers (page=10**20 failed the query with a 500; Schemathesis found it)."""

OLDER_NAME_OF = "older_name_of"
"""Field metadata marking an endpoint's older name of ``page_size``."""


def _page_size(**kwargs: Any) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=MAX_PAGE_SIZE), **kwargs)


def older_page_size() -> fields.Integer:
    """An older name of ``page_size`` that an endpoint still takes: declare it under that name in its page query."""
    return _page_size(metadata={OLDER_NAME_OF: "page_size"})


class PageQuerySchema(_Strict):
    """``page`` (from 1) and ``page_size`` (1 to 1000): what every list endpoint takes.

    A subclass sets ``PAGE_SIZE_DEFAULT`` when a bare call answered more before the endpoint paged, and
    declares ``<older name> = older_page_size()`` where the endpoint took its page size under another name.
    """

    PAGE_SIZE_DEFAULT: ClassVar[int] = DEFAULT_PAGE_SIZE
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    page_size = _page_size()

    @post_load
    def _one_page_size(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        size = data.get("page_size")
        for name, field in self.fields.items():
            older = data.pop(name, None) if field.metadata.get(OLDER_NAME_OF) else None
            if older is None:
                continue
            if size is not None and older != size:
                raise ValidationError(f"{name} is the old name of page_size: give one of them", name)
            size = older
        data["page_size"] = self.PAGE_SIZE_DEFAULT if size is None else size
        return data


class AuditQuerySchema(PageQuerySchema):
    """Query string of GET /api/audit: ``limit`` is the older name of ``page_size``."""

    PAGE_SIZE_DEFAULT = 100  # what it answered before it paged (its ``limit`` default)
    limit = older_page_size()
    actor = Text(validate=validate.Length(max=255))  # entries whose actor contains it
    action = Text(validate=validate.Length(max=255))
    target = Text(validate=validate.Length(max=255))
    since = fields.AwareDateTime(default_timezone=UTC)  # ISO 8601; without a zone, UTC
    until = fields.AwareDateTime(default_timezone=UTC)


class UpperString(Text):
    """A string compared upper-case: deployment states are PENDING, RUNNING...; ``running`` finds them too."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip().upper()


class TemplateListQuerySchema(PageQuerySchema):
    """Query string of GET /api/templates."""

    name = Text(validate=validate.Length(max=MAX_NAME))


class DeploymentListQuerySchema(PageQuerySchema):
    """Query string of GET /api/deployments."""

    state = UpperString(validate=validate.OneOf([s.value for s in DeploymentState]))
    name = Text(validate=validate.Length(max=MAX_NAME))


class ScheduleListQuerySchema(PageQuerySchema):
    """Query string of GET /api/schedules."""

    # It answered every schedule before it paged, and clients find a schedule by name in it.
    PAGE_SIZE_DEFAULT = MAX_PAGE_SIZE


MAX_TASK_COMMAND = 65536
MAX_TARGETS = 10_000
MAX_TEXT = 65536
MAX_ENV = 256
MAX_WAIT_SECONDS = 300


MAX_URL = 2048
MIN_PROCESSOR_SECRET = 16
MAX_PROCESSOR_SECRET = 256


class ProcessorSchema(_Strict):
    """``processor``: a webhook that receives each node's result and the task's summary, signed with ``secret``."""

    url = TrimmedString(required=True, validate=_bounded(MAX_URL))
    # HMAC-SHA256 key of X-Corral-Signature; sealed at rest, never answered.
    secret = Text(required=True, validate=validate.Length(min=MIN_PROCESSOR_SECRET, max=MAX_PROCESSOR_SECRET))

    @validates_schema
    def _http_url(self, data: dict[str, Any], **kwargs: Any) -> None:
        problem = check_url(data.get("url", ""), "processor URL")
        if problem:
            raise ValidationError(problem, "url")


SCRIPT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SCRIPT_VERSION = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
INTERPRETER = r"^(sh|bash|python3|/[A-Za-z0-9_.+/-]+)$"
MAX_SCRIPT_NAME = 100
MAX_SCRIPT_VERSION = 64
MAX_SCRIPT_REF = MAX_SCRIPT_NAME + 1 + MAX_SCRIPT_VERSION


class _CommandOnTargets(_Strict):
    """What a fleet task and a schedule both say: a command or a registered script with its parameters, where to
    run it, for how long, with what env."""

    command = TrimmedString(validate=_bounded(MAX_TASK_COMMAND))
    script = TrimmedString(
        validate=_bounded(MAX_SCRIPT_REF),
        metadata={"description": "A registered script as name@version (instead of command)."},
    )
    params = fields.Dict(
        keys=Text(validate=_bounded(MAX_NAME)),
        values=fields.Raw(allow_none=True),
        validate=validate.Length(max=MAX_ENV),
        metadata={"description": "The script's parameter values, each of its declared type."},
    )
    targets = fields.List(
        TrimmedString(validate=_bounded(MAX_NAME)),
        required=True,
        validate=validate.Length(min=1, max=MAX_TARGETS, error="Must hold between {min} and {max} targets."),
    )
    timeout = fields.Integer(
        strict=True, load_default=TASK_TIMEOUT, validate=validate.Range(min=1, max=TASK_TIMEOUT_MAX)
    )
    env = fields.Dict(
        keys=Text(validate=_bounded(MAX_NAME)),
        values=Text(validate=validate.Length(max=MAX_TEXT)),
        load_default=dict,
        validate=validate.Length(max=MAX_ENV),
    )
    # Encrypted at rest, sent to each node sealed for it, answered as names only (services.secret_store).
    secret_env = fields.Dict(
        data_key="secretEnv",
        keys=Text(validate=_bounded(MAX_NAME)),
        values=Text(validate=validate.Length(max=MAX_TEXT)),
        load_default=dict,
        validate=validate.Length(max=MAX_ENV),
    )
    description = Text(load_default="", validate=validate.Length(max=MAX_TEXT))
    processor = fields.Nested(ProcessorSchema, allow_none=True, load_default=None)

    @validates_schema
    def _secret_names_apart(self, data: dict[str, Any], **kwargs: Any) -> None:
        clash = sorted(set(data.get("env") or {}) & set(data.get("secret_env") or {}))
        if clash:
            raise ValidationError(f"names both in env and secretEnv: {', '.join(clash)}", "secretEnv")

    @validates_schema
    def _command_or_script(self, data: dict[str, Any], **kwargs: Any) -> None:
        # The script and its parameters are checked against the registry by the service (scripts.running.prepare).
        if ("command" in data) == ("script" in data):
            raise ValidationError("give either command or script (name@version)", "command")
        if "params" in data and "script" not in data:
            raise ValidationError("params are a script's: give script (name@version)", "params")


class FleetTaskSchema(_CommandOnTargets):
    """Body of POST /api/tasks: one command, or one registered script with its parameters, on many nodes."""

    name = _name()
    parameters = Text(load_default="", validate=validate.Length(max=MAX_TEXT))
    created_by = TrimmedString(validate=validate.Length(max=MAX_NAME))
    start = fields.Boolean(load_default=True)


class ScriptSchema(_Strict):
    """Body of POST /api/scripts: a script version, its body (text) or archive (base64 zip) and entry."""

    name = fields.String(
        required=True, validate=[validate.Length(min=1, max=MAX_SCRIPT_NAME), validate.Regexp(SCRIPT_NAME)]
    )
    version = fields.String(
        required=True, validate=[validate.Length(min=1, max=MAX_SCRIPT_VERSION), validate.Regexp(SCRIPT_VERSION)]
    )
    interpreter = fields.String(
        required=True,
        validate=[
            validate.Length(max=255),
            validate.Regexp(INTERPRETER, error="sh, bash, python3 or an absolute path"),
        ],
    )
    # null is "not this one", as absent.
    body = Text(allow_none=True, metadata={"description": "The script's text (or give archive and entry)."})
    archive = fields.String(allow_none=True, metadata={"description": "A zip archive, base64."})
    entry = Text(
        allow_none=True, validate=validate.Length(max=255), metadata={"description": "The archive's file to run."}
    )
    params = fields.List(
        fields.Raw(),
        load_default=list,
        metadata={
            "description": "Declared parameters: {name, type (string|int|float|bool), required, default, "
            "secret, description}."
        },
    )

    @validates_schema
    def _no_dotdot_interpreter(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "/../" in data.get("interpreter", "") + "/" or data.get("interpreter", "").endswith("/.."):
            raise ValidationError("an absolute path without '..'", "interpreter")


class ScriptListQuerySchema(PageQuerySchema):
    """Query string of GET /api/scripts."""

    name = Text(validate=validate.Length(max=MAX_SCRIPT_NAME))


class ScriptDetailQuerySchema(_Strict):
    """Query string of GET /api/scripts/<name>/<version>: ``content=1`` adds the content (text, or base64)."""

    content = fields.Boolean(load_default=False)


class WaitQuerySchema(_Strict):
    """``?wait=N``: seconds to wait for the fleet task to end before answering."""

    wait = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=MAX_WAIT_SECONDS))


class TaskListQuerySchema(PageQuerySchema):
    """Query string of GET /api/tasks: ``size`` is the older name of ``page_size``."""

    size = older_page_size()
    status = Text(validate=validate.OneOf([s.value for s in FleetTaskStatus]))
    name = Text(validate=validate.Length(max=MAX_NAME))


class TaskOutputQuerySchema(_Strict):
    """Query string of GET /api/tasks/<id>/output."""

    node = Text(validate=_bounded(MAX_ID))


MAX_SCHEDULE_NAME = 200  # "schedule:<name>" must fit the tasks' created_by column
MAX_INTERVAL_SECONDS = 366 * 24 * 3600
MAX_CRON = 255


class ScheduleSchema(_CommandOnTargets):
    """Body of POST /api/schedules: a fleet task fired by a crontab line (UTC) or every N seconds."""

    name = TrimmedString(required=True, validate=_bounded(MAX_SCHEDULE_NAME))
    # null is accepted as "not this one", so a schedule's JSON (which shows both) can be posted back.
    cron = TrimmedString(allow_none=True, validate=_bounded(MAX_CRON))
    interval = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=1, max=MAX_INTERVAL_SECONDS))
    on_agent = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Fired by each target node's agent from its own clock, even while the manager or Redis "
            "is unreachable; the results are reported when the link is back (to its processor too). No secretEnv."
        },
    )

    @validates_schema
    def _on_agent_limits(self, data: dict[str, Any], **kwargs: Any) -> None:
        # A node would have to hold the secrets at rest to fire without the manager: refused in this version.
        # A processor needs nothing on the node: the manager delivers the results it records from the reports.
        if data.get("on_agent") and data.get("secret_env"):
            raise ValidationError("an on_agent schedule cannot carry secret env (not in this version)", "secretEnv")

    @validates_schema
    def _one_trigger(self, data: dict[str, Any], **kwargs: Any) -> None:
        has_cron, has_interval = data.get("cron") is not None, data.get("interval") is not None
        if has_cron and has_interval:
            raise ValidationError("give either cron or interval, not both", "cron")
        if not has_cron and not has_interval:
            raise ValidationError("give either cron (a crontab line) or interval (seconds)", "cron")
        if has_cron:
            from shared.schedule_triggers import crontab_trigger

            try:
                crontab_trigger(data["cron"])
            except ValueError as exc:
                raise ValidationError(f"not a valid crontab line: {exc}", "cron") from exc
