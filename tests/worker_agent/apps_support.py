"""Helpers of the app instance tests: an AppInstances on the test Redis, payloads, and reading its reports and logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis as redis_lib

from shared import keys, report_streams
from shared.messages import InstanceSpecSchema, StopInstanceSchema
from worker_agent import jobs
from worker_agent.app_instances.manager import AppInstances

from .conftest import node_reports


def make_instances(data_dir: Path, node_id: str, redis: redis_lib.Redis, **options: Any) -> AppInstances:
    """An AppInstances that publishes to the test Redis, with a fast poll and a report every 0.5 s."""
    options.setdefault("poll_interval", 0.05)
    options.setdefault("report_interval", 0.5)
    return AppInstances(
        data_dir,
        node_id,
        lambda report: report_streams.publish_instance_report(redis, report),
        redis=lambda: redis,
        **options,
    )


@contextlib.contextmanager
def running(instances: AppInstances) -> Iterator[AppInstances]:
    """``instances`` recovered, supervising and registered for the job functions for the block; closed after
    (its processes left running, as the agent leaves them)."""
    instances.recover()
    instances.start_monitor()
    jobs.register_instances(instances)
    try:
        yield instances
    finally:
        jobs.register_instances(None)
        instances.close()


def spec(instance_id: str, command: str, **extra: Any) -> dict[str, Any]:
    """An InstanceSpecSchema payload of app "web", fast backoff."""
    payload = {
        "app": "web",
        "instance_id": instance_id,
        "version": 1,
        "command": command,
        "backoff_seconds": 0.2,
        "backoff_factor": 2.0,
        "max_backoff_seconds": 10.0,
        **extra,
    }
    return InstanceSpecSchema().load(payload)


def stop(instance_id: str, **extra: Any) -> dict[str, Any]:
    return StopInstanceSchema().load({"app": "web", "instance_id": instance_id, **extra})


def check(protocol: str, **extra: Any) -> dict[str, Any]:
    """A healthChecks entry with fast timings."""
    return {
        "protocol": protocol,
        "initial_delay_seconds": 0.0,
        "interval_seconds": 0.3,
        "timeout_seconds": 2.0,
        "max_consecutive_failures": 3,
        **extra,
    }


def reports(redis: redis_lib.Redis, instance_id: str) -> list[dict[str, Any]]:
    """Every report of one instance, oldest first."""
    return [r for r in node_reports(redis, report_streams.INSTANCE) if r["instance_id"] == instance_id]


def last(redis: redis_lib.Redis, instance_id: str) -> dict[str, Any] | None:
    found = reports(redis, instance_id)
    return found[-1] if found else None


def state_is(redis: redis_lib.Redis, instance_id: str, state: str, **fields: Any) -> dict[str, Any] | None:
    """The last report of the instance when it is in ``state`` (and has ``fields``)."""
    report = last(redis, instance_id)
    if report and report["state"] == state and all(report.get(k) == v for k, v in fields.items()):
        return report
    return None


def log_lines(redis: redis_lib.Redis, node_id: str, instance_id: str, stream: str = "stdout") -> list[str]:
    entries = redis.xrange(keys.instance_log(node_id, instance_id))
    return [f[b"line"].decode() for _id, f in entries if f[b"stream"].decode() == stream]


def first_restart(redis: redis_lib.Redis, instance_id: str) -> dict[str, Any] | None:
    """The first report of ``instance_id`` that tells of an automatic restart, or None yet."""
    return next((r for r in reports(redis, instance_id) if r["restart"]), None)
