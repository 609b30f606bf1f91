"""The join call: what an agent sends to POST /api/agent/join, and what the manager answers."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, ValidationError, fields, validate

from .. import keys
from .base import NUL_REFUSED, Text, WireSchema


def _labels_without_nul(facts: dict[str, Any]) -> None:
    # Only labels are checked here: the rest of the facts is free-form, and the manager keeps the labels it can
    # use and ignores the others (services.node_labels); but a NUL in one is a malformed join, not a bad label.
    labels = facts.get("labels")
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        for part, text in (("key", key), ("value", value)):
            if isinstance(text, str) and "\x00" in text:
                raise ValidationError({"labels": {key: {part: [NUL_REFUSED]}}})


class JoinRequestSchema(WireSchema):
    """Body of POST /api/agent/join, sent by an agent when it starts or reconnects."""

    class Meta:
        # Unlike the other messages, refused: agents and manager are upgraded together (README, Security), the
        # agent sends exactly these fields (worker_agent/agent.py), and this public endpoint should not store
        # what nobody checked.
        unknown = RAISE

    # keys.NODE_ID: the id is spelled into the node's Redis user's key patterns (agents make 32 hex digits).
    node_id = Text(required=True, validate=validate.Regexp(keys.NODE_ID, error="letters, digits and '-' only, 1 to 64"))
    hostname = Text(required=True, validate=validate.Length(min=1, max=255))
    ip = Text(required=True, validate=validate.Length(min=1, max=64))
    interval = fields.Float(required=True, validate=validate.Range(min=0.1, max=3600))
    protocol = fields.Integer(required=True)
    version = Text(load_default="")
    facts = fields.Dict(keys=Text(), load_default=dict, validate=_labels_without_nul)
    # Made by the agent at its first start; the manager keeps its digest and asks for it at every later join
    # under this node id, so that nobody else (even with the join token) can take the node's place.
    node_secret = Text(required=True, validate=validate.Length(min=16, max=128))


class JoinResponseSchema(WireSchema):
    """Answer of POST /api/agent/join: all an agent needs to work its queue."""

    node_id = fields.String(required=True)
    redis_url = fields.String(required=True)
    queue = fields.String(required=True)
    protocol = fields.Integer(required=True)
    job_key = fields.String(required=True)  # hex key of this node's job signatures (shared.job_signing)
