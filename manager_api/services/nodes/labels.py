"""Node labels: the agent's (sent at the join) and the API's (PUT /api/nodes/{id}/labels), and how they combine.

The two sets are kept apart: ``Node.api_labels`` holds what the API set, the agent's set is the
``labels`` of the facts it sent at its last join. ``Node.labels`` holds the effective set, the agent's
overridden key by key by the API's, rewritten whenever either side changes; fleet task targets and
business affinity read only that column. An agent re-joining with other labels never erases API labels.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

MAX_LABELS = 64
MAX_LABEL_TEXT = 255

LABEL_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
"""What a label key may be made of: the same rule as the agent's --label flag (worker_agent/labels.py)."""


def valid_agent_labels(node_id: str, raw: Any) -> dict[str, str]:
    """``facts["labels"]`` when it is a small dict of non-empty str -> str without "=" in keys, else {}."""
    if raw is None:
        return {}
    ok = (
        isinstance(raw, dict)
        and len(raw) <= MAX_LABELS
        and all(
            isinstance(k, str)
            and isinstance(v, str)
            and 0 < len(k.strip()) <= MAX_LABEL_TEXT
            and "=" not in k
            and len(v) <= MAX_LABEL_TEXT
            for k, v in raw.items()
        )
    )
    if not ok:
        logger.warning("node %s: facts.labels ignored: not a dict of short str -> str", node_id)
        return {}
    return {k.strip(): v.strip() for k, v in raw.items()}


def agent_labels_of(node_id: str, facts_text: str | None) -> dict[str, str]:
    """The agent's labels as stored with its facts."""
    try:
        facts = json.loads(facts_text or "{}")
    except ValueError:
        return {}
    return valid_agent_labels(node_id, facts.get("labels")) if isinstance(facts, dict) else {}


def effective(agent: Mapping[str, str], api: Mapping[str, str]) -> dict[str, str]:
    """The labels a node has: the agent's, with the API's winning on the same key."""
    return {**agent, **api}


def dumps(labels: Mapping[str, str]) -> str:
    """Labels as the database stores them (sorted keys, so equal sets store equal text)."""
    return json.dumps(dict(labels), sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> dict[str, str]:
    """Labels as stored, {} when empty or unreadable."""
    if not text or text == "{}":
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
