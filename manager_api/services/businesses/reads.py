"""Reading businesses: a page of them, one with its components and recent history."""

from __future__ import annotations

from typing import NamedTuple

from peewee import JOIN

from manager_api.models import Business, BusinessComponent, BusinessHistory, Node
from manager_api.services.businesses.actions import get
from manager_api.services.paging import Page, matching, page_of, status_counts

HISTORY_LIMIT = 100
"""Transitions shown in a business's history, newest first."""

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
