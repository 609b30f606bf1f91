"""Helpers of the component tests: a ComponentManager on the test Redis, payloads, and reading its reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis as redis_lib

from shared import report_streams
from worker_agent.components.image_fetch import SftpSettings
from worker_agent.components.manager import ComponentManager

from .conftest import node_reports


def make_manager(data_dir: Path, node_id: str, redis: redis_lib.Redis, **options: Any) -> ComponentManager:
    """A ComponentManager that publishes to the test Redis, with a fast monitor and usage every 0.3 s."""
    options.setdefault("usage_interval", 0.3)
    options.setdefault("poll_interval", 0.05)
    options.setdefault("sftp", SftpSettings())
    return ComponentManager(
        data_dir, node_id, lambda report: report_streams.publish_component_report(redis, report), **options
    )


def spec(component_id: str, command: str = "", generation: int = 1, **extra: Any) -> dict[str, Any]:
    """A ComponentSpecSchema payload of a process component of business biz-1."""
    return {
        "business_id": "biz-1",
        "component_id": component_id,
        "component_name": f"name of {component_id}",
        "type": "process",
        "generation": generation,
        "command": command,
        **extra,
    }


def stop_request(component_id: str, generation: int = 0, grace_seconds: float = 5, **extra: Any) -> dict[str, Any]:
    """A StopComponentSchema payload."""
    return {
        "business_id": "biz-1",
        "component_id": component_id,
        "generation": generation,
        "grace_seconds": grace_seconds,
        **extra,
    }


def reports(redis: redis_lib.Redis, component_id: str | None = None) -> list[dict[str, Any]]:
    """Every component report in the streams (parsed by shared.report_streams), optionally of one component."""
    parsed = node_reports(redis, report_streams.COMPONENT)
    return [r for r in parsed if component_id is None or r["component_id"] == component_id]


def statuses(redis: redis_lib.Redis, component_id: str, generation: int | None = None) -> list[str]:
    """The state reports (usage samples left out) of one component, in order."""
    return [
        r["status"]
        for r in reports(redis, component_id)
        if r["resource_usage"] is None and (generation is None or r["generation"] == generation)
    ]


def last_status(redis: redis_lib.Redis, component_id: str, generation: int | None = None) -> dict[str, Any] | None:
    found = [
        r
        for r in reports(redis, component_id)
        if r["resource_usage"] is None and (generation is None or r["generation"] == generation)
    ]
    return found[-1] if found else None


def status_is(
    redis: redis_lib.Redis, component_id: str, status: str, generation: int | None = None
) -> dict[str, Any] | None:
    report = last_status(redis, component_id, generation)
    return report if report and report["status"] == status else None
