"""Node tags (document 003 §5.1.1): the agent's (sent at the join) and the API's (PUT /api/nodes/{id}/tags).

Unlike labels, tags do not merge: once the API has set a node's tags they are its tags, whatever its agent
says at later joins, until DELETE /api/nodes/{id}/tags hands them back to the agent. ``Node.api_tags`` is null
until then; the agent's tags are the ``node.tags`` of the facts it sent at its last join.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from shared.node_tags import check_tags

logger = logging.getLogger(__name__)


def valid_agent_tags(node_id: str, node_document: Any) -> list[str]:
    """``tags`` of the node document an agent sent when they are valid tags, else [] (logged)."""
    raw = node_document.get("tags") if isinstance(node_document, Mapping) else None
    if raw is None:
        return []
    try:
        if not isinstance(raw, list) or not all(isinstance(tag, str) for tag in raw):
            raise ValueError("not a list of strings")
        return check_tags(raw)
    except ValueError as exc:
        logger.warning("node %s: tags of its node document ignored: %s", node_id, exc)
        return []


def effective(agent: list[str], api: list[str] | None) -> list[str]:
    """The tags a node has: the API's once set, else the agent's."""
    return list(agent if api is None else api)


def dumps(tags: list[str] | None) -> str | None:
    """Tags as the database stores them (None: never set through the API)."""
    return None if tags is None else json.dumps(list(tags), ensure_ascii=False)


def loads(text: str | None) -> list[str] | None:
    """API tags as stored; None when never set (or unreadable)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return [str(tag) for tag in value] if isinstance(value, list) else None
