"""Marshmallow schemas of the nodes API: PUT /api/nodes/{id}/labels."""

from __future__ import annotations

from marshmallow import fields, validate

from .schemas import TrimmedString, _Strict
from .services.node_labels import LABEL_KEY, MAX_LABEL_TEXT, MAX_LABELS

LABEL_KEY_RULE = "must be made of letters, digits, '_', '.', '-'"


class NodeLabelsSchema(_Strict):
    """Body of PUT /api/nodes/{id}/labels: the API-set labels, replacing the previous ones ({} clears them)."""

    labels = fields.Dict(
        keys=TrimmedString(
            validate=[
                validate.Length(min=1, max=MAX_LABEL_TEXT),
                validate.Regexp(LABEL_KEY, error=f"label key {{input!r}} {LABEL_KEY_RULE}"),
            ]
        ),
        values=TrimmedString(
            validate=validate.Length(min=1, max=MAX_LABEL_TEXT, error="label value must be 1 to {max} characters")
        ),
        required=True,
        validate=validate.Length(max=MAX_LABELS),
    )
