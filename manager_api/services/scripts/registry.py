"""Registered scripts (issue 17): create a version, list, read, delete; the content goes to Redis by digest.

A version is immutable: (name, version) is written once (409 when it exists, whatever it holds). Its content
is also written to Redis at keys.script_content(digest), where every node's Redis user may read it, so an
agent fetches a script once and caches it by digest (worker_agent.fleet_commands.script_cache).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from typing import Any

from peewee import IntegrityError
from redis import Redis
from redis.exceptions import RedisError

from manager_api import db
from manager_api.models import FleetTask, Schedule, Script, utcnow
from manager_api.services import audit
from manager_api.services.errors import Conflict, Invalid, NotFound
from manager_api.services.fleet_tasks.state import FINAL_STATUSES
from manager_api.services.paging import Page, page_of
from manager_api.services.scripts import archive, params
from shared import keys
from shared.defaults import SCRIPT_MAX_BYTES

logger = logging.getLogger(__name__)

BODY, ZIP = "body", "zip"


def _content_of(data: dict[str, Any]) -> tuple[str, bytes, str]:
    """(kind, content, entry) of a registration, or Invalid naming the field."""
    body, encoded = data.get("body"), data.get("archive")
    if (body is None) == (encoded is None):
        raise Invalid("body: give either body (the script's text) or archive (a base64 zip) with entry")
    if body is not None:
        if data.get("entry"):
            raise Invalid("entry: only an archive has an entry")
        content = body.encode()
        kind, entry = BODY, ""
    else:
        try:
            content = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Invalid("archive: not valid base64") from exc
        if not data.get("entry"):
            raise Invalid("entry: required with an archive (the file of the archive to run)")
        kind, entry = ZIP, archive.check_entry(data["entry"])
    if not content:
        raise Invalid(f"{'body' if kind == BODY else 'archive'}: must not be empty")
    if len(content) > SCRIPT_MAX_BYTES:
        raise Invalid(f"{'body' if kind == BODY else 'archive'}: at most {SCRIPT_MAX_BYTES} bytes")
    if kind == ZIP:
        archive.check_zip(content, entry)
    return kind, content, entry


def _taken(name: str, version: str) -> Conflict:
    return Conflict(f"Script {name}@{version} exists: versions are immutable, register a new version")


def create(redis: Redis, data: dict[str, Any], actor: str) -> Script:
    """Register a version (Invalid, Conflict when it exists); its content is in Redis before this returns."""
    declared = params.check_declared(data.get("params") or [])
    kind, content, entry = _content_of(data)
    name, version = data["name"], data["version"]
    digest = hashlib.sha256(content).hexdigest()
    if Script.select().where(Script.name == name, Script.version == version).exists():
        raise _taken(name, version)
    row = Script(
        name=name,
        version=version,
        interpreter=data["interpreter"],
        kind=kind,
        entry=entry,
        params=json.dumps(declared, ensure_ascii=False),
        digest=digest,
        size=len(content),
        content=content,
        created_by=actor,
        created_at=utcnow(),
    )
    # Written to Redis first: a version the database shows is always fetchable (a write that fails leaves a
    # key nobody names, the same bytes a later registration would write).
    try:
        redis.set(keys.script_content(digest), content)
    except RedisError as exc:
        logger.error("script %s@%s: content not written to Redis: %s", name, version, exc)
        raise
    try:
        with db.write_transaction():
            row.save(force_insert=True)
            detail = {"name": name, "version": version, "digest": digest, "size": len(content), "kind": kind}
            audit.record(actor, "script.create", f"{name}@{version}", detail)
    except IntegrityError as exc:
        raise _taken(name, version) from exc  # another request won the race
    logger.info("script %s@%s (%s, %d bytes, %s) registered by %s", name, version, kind, len(content), digest, actor)
    return row


def get(name: str, version: str) -> Script:
    """One version, or NotFound."""
    row = Script.get_or_none(Script.name == name, Script.version == version)
    if row is None:
        raise NotFound(f"Script {name}@{version} not found")
    return row


def listing(page: int, page_size: int, name: str | None) -> Page:
    """A page of every version, by name then newest first; ``name`` narrows to names containing it."""
    query = Script.select(*_SUMMARY)
    if name:
        query = query.where(Script.name.contains(name))
    total, rows = page_of(query, page, page_size, Script.name, Script.created_at.desc(), Script.id.desc())
    return Page(total, rows, {})


def versions(name: str) -> list[Script]:
    """Every version of ``name``, newest first, or NotFound when it has none."""
    query = Script.select(*_SUMMARY).where(Script.name == name)
    rows = list(query.order_by(Script.created_at.desc(), Script.id.desc()))
    if not rows:
        raise NotFound(f"Script {name} not found")
    return rows


_SUMMARY = [field for field in Script._meta.sorted_fields if field.name != "content"]
"""Every column but the content: listings never read a megabyte per row."""


def users(name: str, version: str) -> list[str]:
    """The ids of the fleet tasks not yet ended that run ``name@version``."""
    open_tasks = FleetTask.select(FleetTask.task_id, FleetTask.script).where(
        FleetTask.script != "", FleetTask.status.not_in([status.value for status in FINAL_STATUSES])
    )
    out = []
    for task_id, script in open_tasks.tuples():
        ref = json.loads(script)
        if ref.get("name") == name and ref.get("version") == version:
            out.append(task_id)
    return out


def schedule_users(name: str, version: str) -> list[str]:
    """The names of the schedules (paused ones too) that run ``name@version``."""
    query = Schedule.select(Schedule.name).where(Schedule.script == f"{name}@{version}").order_by(Schedule.name)
    return [schedule_name for (schedule_name,) in query.tuples()]


def delete(redis: Redis, name: str, version: str, actor: str) -> None:
    """Delete a version (409 while a task that has not ended runs it, or a schedule names it: its next firing
    would fail, an on_agent one's nodes could not fetch it); its Redis content goes with the last version
    holding that digest. Agents keep their cached copies (by digest, harmless)."""
    with db.write_transaction():
        row = get(name, version)
        busy = users(name, version)
        if busy:
            raise Conflict(f"Script {name}@{version} is used by tasks not yet ended: {', '.join(busy[:10])}")
        schedules = schedule_users(name, version)
        if schedules:
            raise Conflict(f"Script {name}@{version} is used by schedules: {', '.join(schedules[:10])}")
        row.delete_instance()
        shared = Script.select().where(Script.digest == row.digest).exists()
        audit.record(actor, "script.delete", f"{name}@{version}", {"digest": row.digest})
    if not shared:
        try:
            redis.delete(keys.script_content(row.digest))
        except RedisError as exc:  # a leftover key nobody names: harmless, and the next registration rewrites it
            logger.warning("script %s@%s: content not removed from Redis: %s", name, version, exc)
    logger.info("script %s@%s deleted by %s", name, version, actor)
