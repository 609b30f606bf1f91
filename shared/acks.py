"""Acknowledgments of agent reports: the manager tells a node which of its reports it has committed.

A report appended to a Redis stream is not yet a report the manager has: a Redis run with appendfsync
everysec loses up to its last second of writes when it dies, and a manager host can die between reading a
report and committing it. So a node keeps each final report until the manager, after its database commit,
adds the report's name to the node's acked set (keys.node_acked); the node sends it again until then
(worker_agent.report_acks). Applying a report twice is a no-op (a host that ended never changes), so a
report sent twice costs nothing but the second read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.client import Pipeline

from . import keys

COMMAND = "command"
"""Kind of a fleet command's final report; its name is the fleet task id."""

TASK = "task"
"""Kind of a deployment task's state event; its name is "<task id>:<state>" (each state is acknowledged)."""

COMPONENT = "component"
"""Kind of a business component's final state report (failed, stopped); its name is
"<business id>:<component id>:<generation>:<state>" (component_name)."""

TTL_SECONDS = 7 * 24 * 3600
"""An acked set nobody reads (its node is gone) expires this long after its last acknowledgment."""


def member(kind: str, name: str) -> str:
    """The acked set member of one report: its kind and name (a task id...)."""
    return f"{kind}:{name}"


def component_name(report: dict[str, Any]) -> str:
    """The name under which a component state report is acknowledged."""
    return f"{report['business_id']}:{report['component_id']}:{report['generation']}:{report['status']}"


def acknowledge(pipe: Pipeline, node_id: str, kind: str, names: Iterable[str]) -> None:
    """Queue on ``pipe`` the acknowledgment of ``node_id``'s reports ``names`` of ``kind`` (after the commit)."""
    members = [member(kind, name) for name in names]
    if members:
        key = keys.node_acked(node_id)
        pipe.sadd(key, *members)
        pipe.expire(key, TTL_SECONDS)
