"""GET /api/openapi.json: every route of the API in a valid OpenAPI 3.1 document, built from the routes' own
schemas; GET /api/docs: that document rendered, its page and files served under a strict CSP."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from manager_api import db
from manager_api.api import openapi
from manager_api.api.route_docs import ROUTE_DOC, route_doc
from manager_api.api.schemas.manual import AuditQuerySchema, TemplateSchema
from manager_api.app import close_app, create_app
from manager_api.config import Settings
from shared.api import DOCS_PATH, OPENAPI_PATH, bearer, is_api_path
from tests.manager_api.conftest import answer

TOKEN = "openapi-test-token"


def served_document(client: FlaskClient) -> dict[str, Any]:
    return answer(client.get(OPENAPI_PATH))


def api_routes(app: Flask) -> dict[str, set[str]]:
    """Every path of the app's url_map under an API prefix (or /healthz) with its methods, the reference page's
    own page and files aside."""
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if is_api_path(rule.rule) and rule.endpoint not in ("docs.page", "docs.static"):
            methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
            routes.setdefault(openapi.openapi_path(rule.rule), set()).update(methods)
    return routes


def test_every_api_route_is_in_the_document_with_its_methods(app: Flask, client: FlaskClient) -> None:
    document = served_document(client)
    routes = api_routes(app)
    assert len(routes) > 40  # the url_map was read, not an empty one
    assert "/api/task/task_group" in routes and "/api/tasks/{task_id}/output" in routes
    missing = {
        f"{method.upper()} {path}"
        for path, methods in routes.items()
        for method in methods
        if method not in document["paths"].get(path, {})
    }
    assert not missing, f"routes without @documented (api/route_docs.py): {sorted(missing)}"
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == {(path, method) for path, methods in routes.items() for method in methods}


def test_a_route_without_its_declaration_is_missing_from_the_document(app: Flask) -> None:
    # What the test above catches: a view that forgot @documented is left out, not described by a guess.
    view = app.view_functions["audit.recent"]
    declared = route_doc(view)
    assert declared is not None
    setattr(view, ROUTE_DOC, None)  # the view function is the module's: put its declaration back after
    try:
        assert "/api/audit" not in openapi.build(app)["paths"]
    finally:
        setattr(view, ROUTE_DOC, declared)
    assert "/api/audit" in openapi.build(app)["paths"]


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = served_document(client)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises OpenAPIValidationError naming what is wrong
    operation_ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_bodies_and_query_strings_are_the_schemas_the_routes_load(client: FlaskClient) -> None:
    document = served_document(client)
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/task/task_group"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Template"}
    template = schemas["Template"]
    assert set(template["properties"]) == set(TemplateSchema().fields)
    assert template["additionalProperties"] is False  # unknown fields are refused (Meta.unknown = RAISE)
    assert template["properties"]["name"]["maxLength"] == 255
    audit = {p["name"]: p for p in document["paths"]["/api/audit"]["get"]["parameters"]}
    assert set(audit) == set(AuditQuerySchema().fields)
    assert audit["since"]["in"] == "query" and audit["since"]["schema"]["format"] == "date-time"
    assert audit["page_size"]["schema"]["maximum"] == 1000
    # A Dict's bound is its number of entries.
    assert schemas["FleetTask"]["properties"]["env"]["maxProperties"] == 256
    join = document["paths"]["/api/agent/join"]["post"]
    assert join["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JoinResponse"
    }
    assert join["security"] == [{"joinToken": []}]


def test_path_parameters_errors_and_security(client: FlaskClient) -> None:
    document = served_document(client)
    show = document["paths"]["/api/templates/{name}"]["get"]
    assert show["parameters"][0] | {"description": ""} == {
        "in": "path",
        "name": "name",
        "required": True,
        "schema": {"type": "string"},
        "description": "",
    }
    assert show["security"] == [{"apiToken": []}]
    assert {"401", "404"} <= set(show["responses"])
    assert show["responses"]["404"] == {"$ref": "#/components/responses/Error404"}
    error = document["components"]["responses"]["Error404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    assert document["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["apiToken"]["description"],
    }
    assert document["paths"]["/healthz"]["get"]["security"] == []
    output = document["paths"]["/api/tasks/{task_id}/output"]["get"]["responses"]["200"]["content"]
    assert set(output) == {"text/event-stream"}
    deploy = document["paths"]["/api/businesses"]["post"]["responses"]
    assert {"200", "201", "400", "409"} <= set(deploy)


def test_an_error_answer_matches_the_documented_error(client: FlaskClient) -> None:
    error = served_document(client)["components"]["schemas"]["Error"]
    body = answer(client.post("/api/task/task_group", json={"name": "", "task_groups": []}), 400)
    assert set(error["required"]) <= set(body) and set(body) <= set(error["properties"])


@pytest.fixture
def guarded_app(settings: Settings) -> Iterator[Flask]:
    """The app with an API token set."""
    application = create_app(dataclasses.replace(settings, api_token=TOKEN))
    yield application
    close_app(application)
    db.close()


def test_the_document_and_the_page_need_no_token_the_api_does(guarded_app: Flask) -> None:
    client = guarded_app.test_client()
    assert client.get("/api/templates").status_code == 401
    assert client.get(OPENAPI_PATH).status_code == 200
    assert client.get(DOCS_PATH).status_code == 200
    with client.get(f"{DOCS_PATH}/static/docs.js") as script:
        assert script.status_code == 200
    assert client.get("/api/templates", headers=bearer(TOKEN)).status_code == 200
    # Only the document's own paths: a path that merely starts like one still asks for the token.
    assert client.get(f"{DOCS_PATH}x").status_code == 401
    assert client.get(f"{OPENAPI_PATH}x").status_code == 401


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.scripts.append(found)
            self._in_script = True
        if tag == "link" and found.get("rel") == "stylesheet" and found.get("href"):
            self.styles.append(str(found["href"]))
        if tag == "style" or "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script: {data[:60]}")


def test_the_docs_page_and_its_files_under_a_strict_csp(client: FlaskClient) -> None:
    page = client.get(DOCS_PATH)
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    parsed = _Page()
    parsed.feed(page.get_data(as_text=True))
    assert not parsed.inline, parsed.inline
    sources = [str(script["src"]) for script in parsed.scripts]
    assert all(sources) and len(sources) == 2, parsed.scripts
    assert any(re.search(r"/vendor/swagger-ui-bundle-[\d.]+\.js$", src) for src in sources)
    assert len(parsed.styles) == 2
    assets = [(src, "text/javascript") for src in sources] + [(href, "text/css") for href in parsed.styles]
    for url, mimetype in assets:
        with client.get(url) as asset:  # closes the file a static answer holds open
            assert asset.status_code == 200, url
            assert asset.mimetype == mimetype, url
            assert len(asset.get_data()) > 100
    # The page finds the document through the attribute docs.js reads.
    assert f'data-spec-url="{OPENAPI_PATH}"' in page.get_data(as_text=True)
    assert client.get(f"{DOCS_PATH}/static/nosuch.js").status_code == 404
