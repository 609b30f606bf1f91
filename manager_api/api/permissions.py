"""The one table of who may call what (issue 15): every API endpoint and method with the role it needs.

tests/manager_api/test_permissions.py walks app.url_map and fails on a route missing here, so a new route
cannot ship without a decision. Reads are the viewer's; what changes the fleet's work (deploy, stop, tasks,
schedules, apps, businesses, templates, node tags and labels) is the operator's; tokens, forgetting nodes and
their secrets are the admin's. An operator's node and command scope is checked further in, by the services
(services/access.py). The agents' join (its own token) and the public paths are no role's.
"""

from __future__ import annotations

from manager_api.services.access import ADMIN, OPERATOR, VIEWER

READS = frozenset({"GET", "HEAD"})

PUBLIC = frozenset({"health.healthz", "docs.openapi", "docs.page", "docs.static", "agents.join"})
"""Answered before any role applies (shared.api.is_public_path, and the join token of agents)."""

READ_ENDPOINTS = frozenset(
    {
        "metrics.metrics",
        "nodes.inventory",
        "nodes.detail",
        "nodes.metrics",
        "nodes.list_nodes",
        "templates.listing",
        "templates.show",
        "deployments.listing",
        "deployments.detail",
        "audit.recent",
        "tasks.listing",
        "tasks.detail",
        "tasks.output",
        "schedules.listing",
        "schedules.detail",
        "scripts.listing",
        "scripts.versions",
        "scripts.detail",
        "workflows.listing",
        "workflows.detail",
        "workflows.stream",
        "businesses.listing",
        "businesses.detail",
        "businesses.components",
        "businesses.metrics",
        "apps.listing",
        "apps.detail",
        "apps.logs",
        "tokens.listing",
        "tokens.detail",
    }
)

POLICY: dict[tuple[str, str], str] = {
    # Reads whose body is a query, not a change (spec 000's POST verbs).
    ("templates.query_template", "POST"): VIEWER,
    ("deployments.query", "POST"): VIEWER,
    # The fleet's work.
    ("templates.create_template", "POST"): OPERATOR,
    ("templates.delete", "DELETE"): OPERATOR,
    ("deployments.deploy", "POST"): OPERATOR,
    ("deployments.stop", "POST"): OPERATOR,
    ("deployments.delete", "DELETE"): OPERATOR,
    ("tasks.create", "POST"): OPERATOR,
    ("tasks.start_task", "POST"): OPERATOR,
    ("tasks.cancel", "POST"): OPERATOR,
    ("schedules.create", "POST"): OPERATOR,
    ("schedules.pause", "POST"): OPERATOR,
    ("schedules.resume", "POST"): OPERATOR,
    ("schedules.delete", "DELETE"): OPERATOR,
    ("scripts.create", "POST"): OPERATOR,
    ("scripts.delete", "DELETE"): OPERATOR,
    ("workflows.create", "POST"): OPERATOR,
    ("workflows.cancel", "POST"): OPERATOR,
    ("businesses.deploy", "POST"): OPERATOR,
    ("businesses.update", "PUT"): OPERATOR,
    ("businesses.delete", "DELETE"): OPERATOR,
    ("businesses.restart", "POST"): OPERATOR,
    ("businesses.stop", "POST"): OPERATOR,
    ("apps.create", "POST"): OPERATOR,
    ("apps.update", "PUT"): OPERATOR,
    ("apps.delete", "DELETE"): OPERATOR,
    ("apps.restart", "POST"): OPERATOR,
    ("apps.scale", "POST"): OPERATOR,
    ("apps.start", "POST"): OPERATOR,
    ("apps.stop", "POST"): OPERATOR,
    ("nodes.set_tags", "PUT"): OPERATOR,
    ("nodes.clear_tags", "DELETE"): OPERATOR,
    ("nodes.set_labels", "PUT"): OPERATOR,
    ("nodes.patch_labels", "PATCH"): OPERATOR,
    # Identity and trust: tokens, and what a node joins with.
    ("nodes.forget", "DELETE"): ADMIN,
    ("nodes.forget_secret", "POST"): ADMIN,
    ("tokens.create", "POST"): ADMIN,
    ("tokens.revoke", "DELETE"): ADMIN,
}
"""(endpoint, method) -> the least role that may call it, besides READ_ENDPOINTS' reads."""

ADMIN_READS = frozenset({"tokens.listing", "tokens.detail"})
"""Reads that are not the viewer's: the list of tokens says who holds what."""


def required_role(endpoint: str, method: str) -> str | None:
    """The least role ``endpoint`` needs for ``method``; None when the table has no entry (then only an admin)."""
    if method == "OPTIONS":
        return VIEWER  # Flask answers it with the allowed methods, whatever the route does
    if method in READS and endpoint in READ_ENDPOINTS:
        return ADMIN if endpoint in ADMIN_READS else VIEWER
    return POLICY.get((endpoint, method))
