"""The history of each node's CPU and memory use: one sample per online node every node_metrics_every_seconds,
taken by the duties from the heartbeat summaries Redis already holds (no extra work on the agents), kept
node_metrics_retention_hours.

At 10,000 nodes and one sample a minute that is 10,000 rows written in batches of one transaction each
minute, and 14.4 million rows kept a day: the retention and the interval are the knobs (README).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from peewee import chunked
from redis import Redis

from manager_api import db
from manager_api.models import NodeMetric, utcnow
from manager_api.services.nodes import manual_list

INSERT_BATCH = 500
"""Samples written per INSERT (4 values a row)."""

PRUNE_CHUNK = 5000
"""Samples deleted per transaction when the retention is applied (short transactions: writers take turns)."""

MAX_POINTS = 1500
"""Longest series one answer carries: a longer span is thinned evenly (a chart is a few hundred pixels wide)."""


def sample(redis: Redis, offline_after_intervals: int) -> int:
    """Record the current use of every online node; returns how many samples were written."""
    nodes = manual_list.read(redis, offline_after_intervals)
    now = utcnow()
    rows = []
    for row in nodes.rows:
        summary = nodes.live.summary(row[0])
        if summary is not None and nodes.live.is_online(row[0]):
            rows.append(
                {
                    "node": row[0],
                    "at": now,
                    "cpu_percent": round(summary.cpu_usage_percent, 1),
                    "memory_percent": round(summary.memory_usage_percent, 1),
                }
            )
    for batch in chunked(rows, INSERT_BATCH):
        with db.write_transaction():
            # One statement text per batch (db.insert_rows): Peewee's insert_many built 10,000 samples a minute
            # value by value, most of the duties' CPU of that minute at 10,000 nodes (py-spy).
            db.insert_rows(NodeMetric, batch)
    return len(rows)


def prune(retention_hours: float) -> int:
    """Delete samples older than the retention; returns how many went."""
    cutoff = utcnow() - timedelta(hours=retention_hours)
    total = 0
    while True:
        with db.write_transaction():
            ids = [
                pk
                for (pk,) in NodeMetric.select(NodeMetric.id).where(NodeMetric.at < cutoff).limit(PRUNE_CHUNK).tuples()
            ]
            if ids:
                NodeMetric.delete().where(NodeMetric.id.in_(ids)).execute()
        total += len(ids)
        if len(ids) < PRUNE_CHUNK:
            return total


def series(node_id: str, hours: float) -> dict[str, Any]:
    """The node's samples of the last ``hours``, oldest first, as parallel lists (what a chart draws):
    ``at`` in Unix seconds, ``cpu_percent``, ``memory_percent``."""
    since: datetime = utcnow() - timedelta(hours=hours)
    rows = list(
        NodeMetric.select(NodeMetric.at, NodeMetric.cpu_percent, NodeMetric.memory_percent)
        .where(NodeMetric.node == node_id, NodeMetric.at >= since)
        .order_by(NodeMetric.at)
        .tuples()
    )
    if len(rows) > MAX_POINTS:
        step = len(rows) / MAX_POINTS
        rows = [rows[int(i * step)] for i in range(MAX_POINTS)]
    return {
        "node_id": node_id,
        "hours": hours,
        "at": [round(_unix(at), 3) for at, _cpu, _mem in rows],
        "cpu_percent": [cpu for _at, cpu, _mem in rows],
        "memory_percent": [mem for _at, _cpu, mem in rows],
    }


def _unix(moment: datetime) -> float:
    # The database keeps naive UTC (models.utcnow).
    return (moment - datetime(1970, 1, 1)).total_seconds()
