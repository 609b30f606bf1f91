"""Applying a batch of the agents' reports of one kind: one transaction, a savepoint per report, then the acks.

The duties read reports in batches (background.stream_consumer). Each report is stored in a savepoint of
one write transaction, so a report that cannot be applied (a row it does not fit, a bug) is logged with its
node and ids and dropped without undoing the others. A busy database (OperationalError) fails the whole
batch: it stays pending in its streams and is read again. After the commit, the reports that are final are
acknowledged (shared.acks) so their nodes stop sending them again; a dropped one too, since sending it again
would only fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from peewee import OperationalError
from redis import Redis
from redis.client import Pipeline

from manager_api import db
from shared import acks

logger = logging.getLogger(__name__)

Report = dict[str, Any]
"""One parsed, validated report (shared.report_streams schemas); every one names its ``node_id``."""

Stored = TypeVar("Stored")
Settled = TypeVar("Settled")


def _as_read(reports: list[Report]) -> list[Report]:
    return reports


@dataclass(frozen=True)
class ReportKind(Generic[Stored, Settled]):
    """One kind of agent report: how to name one in a log line, store one, settle a batch and acknowledge."""

    what: str
    """Names the reports in log lines: "task event", "fleet task report", "component report"."""
    about: Callable[[Report], str]
    """What one report is about, for log lines ("task t1 (RUNNING)"); its node is named apart."""
    store: Callable[[Report], Stored]
    """Stores one report, inside its savepoint; what it returns goes to ``settle``."""
    settle: Callable[[list[tuple[Report, Stored]]], Settled]
    """Inside the transaction, after every report: the once-per-batch work (recompute each task touched...)."""
    ack_kind: str
    """The shared.acks kind of these reports."""
    ack_name: Callable[[Report], str | None]
    """The name one report is acknowledged under after the commit; None when it is not final yet."""
    prepare: Callable[[list[Report]], list[Report]] = field(default=_as_read)
    """The reports to store, from those read (fold a host's reports into one...)."""
    store_many: Callable[[list[Report]], list[tuple[Report, Stored]]] | None = None
    """Stores every report at once (the same as ``store`` on each, in fewer statements); should it raise, the
    batch is stored again report by report, so that only a bad report is dropped."""


def apply_batch(kind: ReportKind[Stored, Settled], reports: list[Report]) -> Settled:
    """Store ``reports`` in one write transaction, each in a savepoint; returns what ``kind.settle`` made of them.

    A report that raises is logged and dropped, the others commit; OperationalError fails the batch.
    """
    with db.write_transaction():
        prepared = kind.prepare(reports)
        if kind.store_many is not None:
            try:
                with db.database.atomic():  # a savepoint: undone whole if one report fails it
                    return kind.settle(kind.store_many(prepared))
            except OperationalError:
                raise
            except Exception:
                logger.exception("%d %ss could not be applied at once; one by one", len(prepared), kind.what)
        stored: list[tuple[Report, Stored]] = []
        for report in prepared:
            try:
                with db.database.atomic():  # a savepoint: one bad report does not undo the others
                    stored.append((report, kind.store(report)))
            except OperationalError:
                raise
            except Exception:
                logger.exception(
                    "%s for %s from node %s could not be applied; dropped",
                    kind.what,
                    kind.about(report),
                    report.get("node_id"),
                )
        return kind.settle(stored)


def acknowledge(pipe: Pipeline, kind: ReportKind[Any, Any], reports: list[Report]) -> None:
    """Queue on ``pipe`` the acknowledgment of the final ones of ``reports`` (after their commit), per node."""
    by_node: dict[str, list[str]] = {}
    for report in reports:
        name = kind.ack_name(report)
        if name is not None:
            by_node.setdefault(report["node_id"], []).append(name)
    for node_id, names in by_node.items():
        acks.acknowledge(pipe, node_id, kind.ack_kind, names)


def apply_and_acknowledge(
    redis: Redis,
    kind: ReportKind[Stored, Settled],
    reports: list[Report],
    tell: Callable[[Pipeline, Settled], None] | None = None,
) -> Settled:
    """apply_batch, then after the commit the acks, with what ``tell`` queues first on the same pipeline.

    Should the acks fail, the stream entries stay pending, are applied again (a no-op) and acknowledged then.
    """
    settled = apply_batch(kind, reports)
    pipe = redis.pipeline(transaction=False)
    if tell is not None:
        tell(pipe, settled)
    acknowledge(pipe, kind, reports)
    if len(pipe):
        pipe.execute()
    return settled
