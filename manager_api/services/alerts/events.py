"""Raising an alert: one Alert row written inside the caller's transaction, never a network call.

The row commits or rolls back with the change it reports, so an alert is neither lost nor raised for a change
that did not happen; the duties' sender (delivery) POSTs it later. Callers raise on a transition only (a node
that flips offline, a task that ends failed, an app that becomes short), so a condition that persists is
raised once.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC
from typing import Any

from manager_api.models import Alert, utcnow

logger = logging.getLogger(__name__)

TASK_FAILED = "task.failed"
"""A fleet task ended failed: at least one of its hosts did not succeed."""
NODE_OFFLINE = "node.offline"
"""A node's heartbeats stopped for the offline window."""
NODE_ONLINE = "node.online"
"""A node judged offline heartbeats again."""
APP_INSTANCE_RESTARTED = "app.instance_restarted"
"""An agent restarted an app instance on its own (it exited or failed its check)."""
APP_SHORT = "app.short"
"""An app could not be kept at its count: fewer instances placed than asked for."""
BUSINESS_FAILED = "business.failed"
"""A business went to failed."""

ALL = (TASK_FAILED, NODE_OFFLINE, NODE_ONLINE, APP_INSTANCE_RESTARTED, APP_SHORT, BUSINESS_FAILED)


_enabled = True


def configure(urls: list[str]) -> None:
    """Record alerts in this process only when webhook URLs are configured. Without URLs nothing is written: rows
    kept while alerts are off would otherwise all be sent, days late, the day URLs are set."""
    global _enabled
    _enabled = bool(urls)


def raise_alert(event: str, **details: Any) -> str | None:
    """Record ``event`` with ``details`` for delivery (call inside the change's transaction); returns its id, or
    None when this manager has no webhook URL."""
    if event not in ALL:
        raise ValueError(f"unknown alert event {event!r}")
    if not _enabled:
        return None
    event_id = uuid.uuid4().hex
    now = utcnow()
    body = {**details, "event": event, "at": now.replace(tzinfo=UTC).isoformat(), "id": event_id}
    Alert.create(event_id=event_id, event=event, body=json.dumps(body, sort_keys=True), created_at=now, next_at=now)
    logger.info("alert %s raised: %s", event_id, event)
    return event_id
