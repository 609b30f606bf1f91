"""Marshmallow schemas of the nodes API: PUT and PATCH /api/nodes/{id}/labels, PUT /api/nodes/{id}/tags."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, ValidationError, fields, post_load, validate, validates

from manager_api.api.schemas.manual import TrimmedString, _Strict
from manager_api.services.nodes.labels import LABEL_KEY, MAX_LABEL_TEXT, MAX_LABELS
from shared.node_tags import MAX_TAGS, check_tags

LABEL_KEY_RULE = "must be made of letters, digits, '_', '.', '-'"


def _labels(allow_none: bool, max_entries: int) -> fields.Dict:
    return fields.Dict(
        keys=TrimmedString(
            validate=[
                validate.Length(min=1, max=MAX_LABEL_TEXT),
                validate.Regexp(LABEL_KEY, error=f"label key {{input!r}} {LABEL_KEY_RULE}"),
            ]
        ),
        values=TrimmedString(
            allow_none=allow_none,
            validate=validate.Length(min=1, max=MAX_LABEL_TEXT, error="label value must be 1 to {max} characters"),
        ),
        required=True,
        validate=validate.Length(max=max_entries),
    )


class NodeLabelsSchema(_Strict):
    """Body of PUT /api/nodes/{id}/labels: the API-set labels, replacing the previous ones ({} clears them)."""

    labels = _labels(allow_none=False, max_entries=MAX_LABELS)


class NodeLabelsPatchSchema(_Strict):
    """Body of PATCH /api/nodes/{id}/labels: a JSON merge patch (RFC 7396) of the API-set labels, where a
    value sets its key and null removes it; the labels it does not name stay."""

    # Room to drop every label and set as many new ones; the resulting set is bounded by the service.
    labels = _labels(allow_none=True, max_entries=2 * MAX_LABELS)


class NodeTagsSchema(_Strict):
    """Body of PUT /api/nodes/{id}/tags: the node's tags from now on, whatever its agent says ([] clears them;
    null hands them back to the agent, as DELETE does)."""

    tags = fields.List(
        fields.String(),
        required=True,
        allow_none=True,
        validate=validate.Length(max=MAX_TAGS, error="Must hold at most {max} tags."),
    )

    @validates("tags")
    def _valid_tags(self, value: list[str] | None, **_kwargs: Any) -> None:
        if value is not None:
            try:
                check_tags(value)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None

    @post_load
    def _each_once(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        # Stripped and each once, in the order given: what the node shows and queries match.
        return {"tags": None if data["tags"] is None else check_tags(data["tags"])}


class NodeListQuerySchema(_Strict):
    """Query string of GET /api/nodes: ``q``, a node query (document 003 §5.1.2), parsed by the service."""

    class Meta:
        unknown = EXCLUDE  # other parameters were ignored before this schema read the query string

    q = fields.String(metadata={"description": "A node query (document 003 §5.1.2), e.g. `tags:web AND os.cpus:>4`"})


class NodeMetricsQuerySchema(_Strict):
    """Query string of GET /api/nodes/{id}/metrics."""

    hours = fields.Float(load_default=6.0, validate=validate.Range(min=0, min_inclusive=False, max=24 * 31))
