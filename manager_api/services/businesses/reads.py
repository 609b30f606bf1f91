"""Reading businesses: a page of them, one with its components and recent history."""

from __future__ import annotations

from datetime import UTC
from typing import NamedTuple

from peewee import JOIN

from manager_api.models import Business, BusinessComponent, BusinessHistory, ComponentMetric, Node
from manager_api.services.businesses.actions import get
from manager_api.services.paging import Page, matching, page_of, status_counts

HISTORY_LIMIT = 100
"""Transitions shown in a business's history, newest first."""

USAGE_SAMPLES = 2000
"""Usage samples read for one business's charts, the newest (older ones are left out)."""

PlacedComponent = tuple[BusinessComponent, str | None]
"""A component row and the hostname of its node (None when it has none)."""


class BusinessDetail(NamedTuple):
    """One business, its components in the order of its request, its last transitions newest first."""

    business: Business
    components: list[PlacedComponent]
    history: list[BusinessHistory]


def components(business_id: str) -> list[PlacedComponent]:
    """Every component of the business, in the order of its request, with its node's hostname."""
    get(business_id)
    query = (
        BusinessComponent.select(BusinessComponent, Node.id, Node.hostname)
        .join(Node, JOIN.LEFT_OUTER)
        .where(BusinessComponent.business == business_id)
        .order_by(BusinessComponent.id)
    )
    return [(row, row.node.hostname if row.node_id else None) for row in query]


def history(business_id: str) -> list[BusinessHistory]:
    """The business's last HISTORY_LIMIT transitions, newest first."""
    return list(
        BusinessHistory.select()
        .where(BusinessHistory.business == business_id)
        .order_by(BusinessHistory.id.desc())
        .limit(HISTORY_LIMIT)
    )


def detail(business_id: str) -> BusinessDetail:
    """One business with its components and recent transitions."""
    business = get(business_id)
    return BusinessDetail(business, components(business_id), history(business_id))


def listing(page: int, page_size: int, status: str | None, name: str | None) -> Page:
    """A page of businesses, newest first, each with its components counted by state."""
    query = matching(Business.select(), Business.status, status, Business.business_name, name)
    total, businesses = page_of(query, page, page_size, Business.created_at.desc(), Business.business_id)
    counts = status_counts(BusinessComponent.business, BusinessComponent.status, [b.business_id for b in businesses])
    return Page(total, businesses, counts)


class UsageSeries(NamedTuple):
    """A business's usage history aligned on one time axis (for charts): ``times`` in epoch seconds, and per
    component id a CPU percent and a memory MB list as long as ``times``, None where it has no sample then."""

    times: list[float]
    cpu: dict[str, list[float | None]]
    memory: dict[str, list[float | None]]


def usage_history(business_id: str, limit: int = USAGE_SAMPLES) -> UsageSeries:
    """The stored usage samples (ComponentMetric, kept for the retention period) of every component of the
    business, oldest first, at most ``limit`` of the newest."""
    get(business_id)
    query = (
        ComponentMetric.select(
            ComponentMetric.timestamp,
            ComponentMetric.cpu_percent,
            ComponentMetric.memory_mb,
            BusinessComponent.component_id,
        )
        .join(BusinessComponent)
        .where(BusinessComponent.business == business_id)
        .order_by(ComponentMetric.timestamp.desc())
        .limit(limit)
        .tuples()
    )
    samples = sorted(query, key=lambda row: row[0])
    component_ids = [
        row.component_id
        for row in BusinessComponent.select(BusinessComponent.component_id)
        .where(BusinessComponent.business == business_id)
        .order_by(BusinessComponent.id)
    ]
    times: list[float] = []
    cpu: dict[str, list[float | None]] = {cid: [] for cid in component_ids}
    memory: dict[str, list[float | None]] = {cid: [] for cid in component_ids}
    for at, cpu_percent, memory_mb, component_id in samples:
        stamp = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
        if not times or times[-1] != stamp:
            times.append(stamp)
            for cid in component_ids:
                cpu[cid].append(None)
                memory[cid].append(None)
        if component_id in cpu:
            cpu[component_id][-1] = cpu_percent
            memory[component_id][-1] = memory_mb
    return UsageSeries(times, cpu, memory)
