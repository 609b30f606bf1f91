"""The policy table (api/permissions.py) covers every API route, and each role stops where it says: a viewer
gets 403 on every route that changes something, an operator 403 on the admin's, an admin passes everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from manager_api.api import permissions
from manager_api.config import Settings
from manager_api.services.access import ROLES
from shared.api import bearer

from .token_helpers import make_token, secured_app

SKIPPED_METHODS = {"OPTIONS", "HEAD"}


def api_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, a concrete path) of every route of the JSON API and /metrics (not the console's)."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("console.") or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "no-such-thing", rule.rule)
        for method in sorted((rule.methods or set()) - SKIPPED_METHODS):
            routes.append((rule.endpoint, method, path))
    return sorted(routes)


@pytest.fixture(scope="module")
def route_table(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, str]]:
    from manager_api.app import create_app

    # The routes are the same whatever the settings: any database and an unreachable Redis list them.
    application = create_app(
        Settings(db_path=str(tmp_path_factory.mktemp("m") / "m.db"), redis_url="redis://127.0.0.1:1/0")
    )
    return [route for route in api_routes(application) if route[0] not in permissions.PUBLIC]


def test_every_api_route_has_a_policy(route_table: list[tuple[str, str, str]]) -> None:
    missing = [
        (endpoint, method) for endpoint, method, _ in route_table if permissions.required_role(endpoint, method) is None
    ]
    assert missing == [], f"add these to manager_api/api/permissions.py: {missing}"
    # And the table names no route that is gone.
    present = {(endpoint, method) for endpoint, method, _ in route_table}
    assert set(permissions.POLICY) - present == set()
    assert {e for e in permissions.READ_ENDPOINTS} - {endpoint for endpoint, _, _ in route_table} == set()


def test_viewers_may_only_read(route_table: list[tuple[str, str, str]]) -> None:
    for endpoint, method, _ in route_table:
        if method not in permissions.READS and permissions.POLICY[(endpoint, method)] == "viewer":
            assert endpoint in ("templates.query_template", "deployments.query")  # spec 000's reads by POST


@pytest.fixture
def role_tokens(settings: Settings) -> Iterator[tuple[FlaskClient, dict[str, str]]]:
    with secured_app(settings) as application:
        client = application.test_client()
        yield client, {role: make_token(client, role, role)["token"] for role in ROLES}


def test_each_role_is_stopped_exactly_where_the_table_says(
    role_tokens: tuple[FlaskClient, dict[str, str]], route_table: list[tuple[str, str, str]]
) -> None:
    client, tokens = role_tokens
    wrong = []
    for endpoint, method, path in route_table:
        needed = permissions.required_role(endpoint, method)
        assert needed is not None
        for role, token in tokens.items():
            response = client.open(path, method=method, headers=bearer(token), json={})
            allowed = ROLES.index(role) >= ROLES.index(needed)
            refused = response.status_code == 403 and "needs" in (response.get_json() or {}).get("error", "")
            if allowed == refused or response.status_code == 401:
                wrong.append((role, method, path, response.status_code, response.get_json()))
    assert wrong == []


def test_a_refusal_names_the_role_and_what_it_lacks(role_tokens: tuple[FlaskClient, dict[str, str]]) -> None:
    client, tokens = role_tokens
    response = client.post("/api/tokens", json={"name": "x", "role": "admin"}, headers=bearer(tokens["operator"]))
    assert response.status_code == 403
    assert response.get_json() == {"error": "Token 'operator' has role operator: POST /api/tokens needs admin"}
    response = client.delete("/api/nodes/n1", headers=bearer(tokens["viewer"]))
    assert response.get_json()["error"] == "Token 'viewer' has role viewer: DELETE /api/nodes/n1 needs admin"
