"""Running a registered script as a fleet task (issue 17): the task's script reference, checked before
anything is written, and what RUN_COMMAND carries for it.

A script task is a fleet task whose command reads ``script:<name>@<version>`` (what a token's command allowlist
matches) and whose ``script`` column holds the reference below; its parameters reach the node as environment
(CORRAL_PARAM_<NAME>, secret ones through the task's secret env, sealed per node) and, the plain ones only, as
arguments ``--name=value``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

from redis import Redis

from manager_api.models import Script
from manager_api.services.errors import Invalid
from manager_api.services.scripts import params
from shared import keys

logger = logging.getLogger(__name__)

COMMAND_PREFIX = "script:"


class ScriptRun(NamedTuple):
    """What a task that runs a script records: its command, its reference, and the parameters' environment."""

    command: str
    ref: dict[str, Any]
    env: dict[str, str]
    secret_env: dict[str, str]


def split_ref(ref: str) -> tuple[str, str]:
    """(name, version) of ``name@version``, or Invalid naming the script field."""
    name, at, version = ref.rpartition("@")
    if not at or not name or not version:
        raise Invalid(f"script: {ref!r} must read name@version")
    return name, version


def find(ref: str) -> Script:
    """The version ``ref`` names, or Invalid saying what is unknown: the name, or the version (and which exist)."""
    name, version = split_ref(ref)
    row = Script.get_or_none(Script.name == name, Script.version == version)
    if row is not None:
        return row
    known = [v for (v,) in Script.select(Script.version).where(Script.name == name).order_by(Script.id).tuples()]
    if not known:
        raise Invalid(f"script: unknown script {name!r}")
    raise Invalid(f"script: {name!r} has no version {version!r} (versions: {', '.join(known)})")


def prepare(data: dict[str, Any]) -> ScriptRun:
    """Check a task's ``script`` and ``params`` (Invalid naming the field: script, params.<name>, env)."""
    row = find(data["script"])
    values = params.resolve(json.loads(row.params), data.get("params"))
    env = {params.env_name(name): value for name, value in values.plain.items()}
    secret = {params.env_name(name): value for name, value in values.secret.items()}
    clash = sorted((set(data.get("env") or {}) | set(data.get("secret_env") or {})) & (set(env) | set(secret)))
    if clash:
        raise Invalid(f"env: {', '.join(clash)} is set by the script's parameters")
    ref = {
        "name": row.name,
        "version": row.version,
        "digest": row.digest,
        "interpreter": row.interpreter,
        "kind": row.kind,
        "entry": row.entry,
        "size": row.size,
        "params": values.plain,
        "secret_params": sorted(values.secret),  # names only: the values travel in the task's secret env
    }
    return ScriptRun(f"{COMMAND_PREFIX}{row.name}@{row.version}", ref, env, secret)


def param_env_names(script: str) -> set[str]:
    """The environment names a task's script column gave it (left out of a command allowlist's env check)."""
    if not script:
        return set()
    ref = json.loads(script)
    return {params.env_name(name) for name in [*ref.get("params", {}), *ref.get("secret_params", [])]}


def job_part(script: str) -> dict[str, Any] | None:
    """The ``script`` of RUN_COMMAND for a task's script column ("" for a plain command: None)."""
    if not script:
        return None
    return wire_part(json.loads(script))


def wire_part(ref: dict[str, Any]) -> dict[str, Any]:
    """What a node needs to run a resolved script reference (ScriptRun.ref) from its cache
    (shared.messages.ScriptRunSchema): a RUN_COMMAND's ``script``, an agent-side schedule's too."""
    return {
        "name": ref["name"],
        "version": ref["version"],
        "digest": ref["digest"],
        "interpreter": ref["interpreter"],
        "kind": ref["kind"],
        "entry": ref["entry"],
        "args": params.arguments(ref.get("params", {})),
    }


def ship(redis: Redis, script: str) -> None:
    """Write a task's script content to Redis again when it is missing there (Redis was emptied, restarted
    without its data), before RUN_COMMAND is sent; nothing for a plain command."""
    if not script:
        return
    ship_digest(redis, json.loads(script)["digest"])


def ship_digest(redis: Redis, digest: str) -> None:
    """Write the content of ``digest`` to Redis again when it is missing there (ship)."""
    key = keys.script_content(digest)
    if redis.exists(key):
        return
    row = Script.select(Script.content).where(Script.digest == digest).first()
    if row is None:
        logger.warning("script %s: not in Redis and no longer registered; its hosts will fail", digest)
        return
    redis.set(key, bytes(row.content))
    logger.info("script %s: content written to Redis again (%d bytes)", digest, len(row.content))
