"""Answers of the scripts API (presenters.scripts) and the script reference a fleet task shows."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import (
    Answer,
    PageAnswer,
    boolean,
    integer,
    many,
    one_of,
    string_map,
    strings,
    text,
    time,
)
from manager_api.services.scripts.params import TYPES


class ScriptParamAnswer(Answer):
    """A declared parameter."""

    name = text()
    type = one_of(TYPES)
    required = boolean()
    secret = boolean(metadata={"description": "Sent to the nodes sealed, in the environment only; never shown."})
    description = text()
    default = fields.Raw(metadata={"description": "Of the parameter's type; absent when it has none."})


class ScriptAnswer(Answer):
    """A script version (its content only with ``?content=1``)."""

    name = text()
    version = text()
    interpreter = text()
    kind = one_of(["body", "zip"])
    entry = text(metadata={"description": "The archive's file to run; empty for a body."})
    params = many(ScriptParamAnswer)
    digest = text(metadata={"description": "sha256 hex of the content: the agents' cache key."})
    size = integer(metadata={"description": "Bytes of the content."})
    created_by = text()
    created_at = time()
    content = fields.String(metadata={"description": "With ?content=1: the body's text, or the zip in base64."})
    content_encoding = fields.String(metadata={"description": 'With ?content=1: "text" or "base64".'})


class ScriptPageAnswer(PageAnswer):
    scripts = many(ScriptAnswer)


class ScriptVersionsAnswer(Answer):
    name = text()
    versions = many(ScriptAnswer, metadata={"description": "Newest first."})


class ScriptDeletedAnswer(Answer):
    name = text()
    version = text()
    deleted = boolean()


class TaskScriptAnswer(Answer):
    """The script a fleet task runs, with its plain parameters' values and its secret parameters' names."""

    name = text()
    version = text()
    digest = text()
    interpreter = text()
    kind = one_of(["body", "zip"])
    entry = text()
    size = integer()
    params = string_map(metadata={"description": "Values as the script gets them (text)."})
    secret_params = strings(metadata={"description": "Names only: a value is never answered."})
