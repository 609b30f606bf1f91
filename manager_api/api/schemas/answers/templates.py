"""Answers of the templates API (presenters.templates, manual §5.3.2)."""

from __future__ import annotations

from marshmallow import fields

from manager_api.api.schemas.answers.common import Answer, PageAnswer, integer, many, nested, one_of, text, time


class TemplateTaskConfigAnswer(Answer):
    command = text(metadata={"description": "Without its pin."})
    host = fields.String(metadata={"description": "The host the task is pinned to; absent when none."})


class TemplateTaskAnswer(Answer):
    name = text()
    config = nested(TemplateTaskConfigAnswer)


class TemplateGroupAnswer(Answer):
    tasks = many(TemplateTaskAnswer)


class TemplateAnswer(Answer):
    """A template as POST /api/task/query shows it."""

    name = text()
    task_groups = many(TemplateGroupAnswer)


class TemplateSummaryAnswer(Answer):
    name = text()
    groups = integer()
    tasks = integer()
    created_at = time()
    deployments = integer()


class TemplatePageAnswer(PageAnswer):
    templates = many(TemplateSummaryAnswer)


class TemplateDeletedAnswer(Answer):
    status = one_of(["success"])
    name = text()
